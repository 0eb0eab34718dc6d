"""The side-by-side benchmark harness behind ``python -m procly bench``.

Every benchmark is a :class:`Case` with one runner per contender (``"procly"``, ``"stdlib"``,
and optionally peer libraries such as ``"faster-fifo"``, ``"loky"``, ``"joblib"``,
``"mpire"``).  The harness calls the runners interleaved -- procly, stdlib, peers, procly,
stdlib, ... -- in this one process tree, so that the noise of a shared 2-core machine falls
on every contender alike, and reports medians and the ratio of procly's median to every
other contender's.  A case's target is a ratio against one named contender, its
*baseline* (the standard library unless the case says otherwise, e.g. ``"joblib"``), never
an absolute time.  A peer library that is not importable raises :class:`NotInstalled` from
its runner: the table says "not installed" and the other contenders run as usual.  A
runner that keeps state between rounds (a child process, a big array) has a ``close()``,
which the harness calls once the case is done, so that the state does not weigh on later
cases.

Section modules (``procly._bench._<section>``) expose ``cases(quick: bool) -> list[Case]``.
"""

from __future__ import annotations

import gc
import importlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = (
    "SECTIONS",
    "Case",
    "CaseResult",
    "NotInstalled",
    "Skip",
    "contender_module",
    "format_table",
    "import_peer",
    "race",
    "run_cases",
    "run_sections",
)

#: Section name -> module, in the order the table prints them.
SECTIONS: dict[str, str] = {
    "process": "procly._bench._process",
    "pipe": "procly._bench._pipe",
    "sync": "procly._bench._sync",
    "shm": "procly._bench._shm",
    "queues": "procly._bench._queues",
    "pool": "procly._bench._pool",
    "managers": "procly._bench._managers",
}


def contender_module(who: str) -> Any:
    """The package a contender runs: the standard library's :mod:`multiprocessing` for
    ``"stdlib"`` (imported here, lazily: procly's runtime never imports it), else procly."""
    return importlib.import_module("multiprocessing" if who == "stdlib" else "procly")


def race(ctx: Any, target: Callable[..., None], args: tuple[Any, ...], n_procs: int) -> float:
    """Start *n_procs* processes running ``target(*args, ready, go)``, wait until all are
    ready, release them at once and return the seconds until the last one exits.

    *target* must ``ready.release()``, then ``go.wait()``, then do its work: start-up cost
    stays out of the measurement.  Raises :class:`RuntimeError` if a process failed.
    """
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=target, args=(*args, ready, go)) for _ in range(n_procs)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a racing process failed: {[p.exitcode for p in procs]}")
    return elapsed


class Skip(Exception):
    """Raised by a runner that cannot run here (numpy missing, ...); the reason is noted."""


class NotInstalled(Skip):
    """Raised by a peer's runner when its library cannot be imported (shown as "not
    installed"; ``pip install procly[bench]`` brings loky, joblib and mpire)."""


def import_peer(module: str, package: str) -> Any:
    """Import a peer library for a runner; :class:`NotInstalled` (naming the pip package)
    when it is missing, so the case still runs for everyone else."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NotInstalled(f"{package} is not installed (pip install {package})") from None


@dataclass(frozen=True)
class Case:
    """One benchmark: the same work done by each contender.

    ``metric`` is ``"time"`` (seconds per operation, lower is better) or ``"rate"``
    (units per second, higher is better).  ``target`` is the required ratio of procly's
    median to the ``baseline`` contender's: at most ``target`` for time, at least
    ``target`` for rate (so "3x faster than joblib" in time is ``target=1/3,
    baseline="joblib"``).  ``setups`` says, per contender, how it is configured (API,
    start method, backend); the table prints it under the results.
    """

    name: str
    metric: Literal["time", "rate"]
    unit: str
    target: float | None
    runners: dict[str, Callable[[], float]]
    baseline: str = "stdlib"
    setups: dict[str, str] = field(default_factory=dict)


@dataclass
class CaseResult:
    section: str
    name: str
    metric: str
    unit: str
    target: float | None
    baseline: str = "stdlib"
    setups: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    not_installed: set[str] = field(default_factory=set)

    def median(self, who: str) -> float | None:
        values = self.samples.get(who)
        return statistics.median(values) if values else None

    def ratio_to(self, who: str) -> float | None:
        """procly's median / *who*'s median (None if either did not run)."""
        ours, theirs = self.median("procly"), self.median(who)
        if ours is None or theirs is None or theirs == 0:
            return None
        return ours / theirs

    @property
    def ratios(self) -> dict[str, float | None]:
        """procly / every other contender that has samples, in running order."""
        return {who: self.ratio_to(who) for who in self.samples if who != "procly"}

    @property
    def ratio(self) -> float | None:
        """procly / baseline of the medians (what the target is about)."""
        return self.ratio_to(self.baseline)

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if ratio is None or self.target is None:
            return None
        return ratio <= self.target if self.metric == "time" else ratio >= self.target

    def as_json(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "name": self.name,
            "metric": self.metric,
            "unit": self.unit,
            "target": self.target,
            "baseline": self.baseline,
            "setups": self.setups,
            "medians": {who: self.median(who) for who in self.samples},
            "samples": self.samples,
            "skipped": self.skipped,
            "not_installed": sorted(self.not_installed),
            "ratios_procly_over": self.ratios,
            "ratio_procly_over_stdlib": self.ratio_to("stdlib"),
            "ratio_procly_over_baseline": self.ratio,
            "target_met": self.met,
        }


def run_cases(section: str, cases: Sequence[Case], repeats: int, log: Callable[[str], None]) -> list[CaseResult]:
    """Run every case *repeats* times, contenders interleaved within each round."""
    results = []
    for case in cases:
        result = CaseResult(
            section, case.name, case.metric, case.unit, case.target, case.baseline, dict(case.setups)
        )
        log(f"  {section}: {case.name} ...")
        for _ in range(repeats):
            for who, runner in case.runners.items():
                if who in result.skipped:
                    continue
                gc.collect()
                try:
                    value = runner()
                except Skip as exc:
                    result.skipped[who] = str(exc)
                    if isinstance(exc, NotInstalled):
                        result.not_installed.add(who)
                    continue
                except Exception as exc:  # a broken contender must not hide the others
                    result.skipped[who] = f"failed: {type(exc).__name__}: {exc}"
                    continue
                result.samples.setdefault(who, []).append(value)
        _close_runners(case)
        results.append(result)
    return results


def _close_runners(case: Case) -> None:
    """Release what a case's runners kept between rounds (a runner with a ``close()``),
    so that it does not weigh on the cases after it: a benchmark process holding a big
    array makes every later fork slower."""
    for runner in case.runners.values():
        close = getattr(runner, "close", None)
        if close is not None:
            close()


def run_sections(
    names: Sequence[str] | None,
    quick: bool,
    repeats: int,
    log: Callable[[str], None],
    case: str | None = None,
) -> list[CaseResult]:
    """Run the sections *names* (all if empty); *case*: only cases whose name contains it."""
    results: list[CaseResult] = []
    for section, module_name in SECTIONS.items():
        if names and section not in names:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            log(f"  {section}: not written yet (its issue has not landed)")
            continue
        cases = [c for c in module.cases(quick) if case is None or case.lower() in c.name.lower()]
        if not cases:
            continue
        started = time.perf_counter()
        results.extend(run_cases(section, cases, repeats, log))
        log(f"  {section}: {time.perf_counter() - started:.1f} s")
    return results


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        for scale, suffix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if value >= scale or suffix == "ns":
                return f"{value / scale:.3g} {suffix}"
    if unit == "MB/s" and value >= 1e3:
        return f"{value / 1e3:.3g} GB/s"
    if value >= 1e6:
        return f"{value / 1e6:.3g} M{unit}"
    if value >= 1e3:
        return f"{value / 1e3:.3g} k{unit}"
    return f"{value:.3g} {unit}"


def _cell(r: CaseResult, who: str) -> str:
    if who in r.not_installed:
        return "not installed"
    if who in r.skipped:
        return "skipped"
    return _fmt(r.median(who), r.unit)


def format_table(results: Sequence[CaseResult]) -> str:
    """A plain-text table: medians per contender, procly's ratio to the standard library and
    to every peer that ran, the target (against its baseline) and whether it is met; then
    notes (how each peer is configured, who was skipped and why)."""
    contenders = {who for r in results for who in (*r.samples, *r.skipped)}
    peers = sorted(contenders - {"procly", "stdlib"})
    header = ["section", "case", "procly", "stdlib", *peers, "procly/stdlib", "procly/peers", "target", "met"]
    rows = [header]
    for r in results:
        target = "-"
        if r.target is not None:
            target = ("<= " if r.metric == "time" else ">= ") + f"{r.target:.3g}x"
            if r.baseline != "stdlib":
                target += f" {r.baseline}"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        to_stdlib = r.ratio_to("stdlib")
        ratio = "-" if to_stdlib is None else f"{to_stdlib:.2f}x"
        others = ", ".join(
            f"{who} {value:.2f}x" for who, value in r.ratios.items() if who != "stdlib" and value is not None
        )
        cells = [_cell(r, w) for w in ("procly", "stdlib", *peers)]
        rows.append([r.section, r.name, *cells, ratio, others or "-", target, met])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.section}/{r.name}: {who}: {how}" for r in results for who, how in r.setups.items()]
    notes += [
        f"  {r.section}/{r.name}: {who} skipped: {why}"
        for r in results
        for who, why in r.skipped.items()
        if who not in r.not_installed
    ]
    missing = sorted({why for r in results for who, why in r.skipped.items() if who in r.not_installed})
    notes += [f"  {why}" for why in missing]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def write_json(results: Sequence[CaseResult], path: str, meta: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "results": [r.as_json() for r in results]}, f, indent=2)
