"""The side-by-side benchmark harness behind ``python -m procly bench``.

Every benchmark is a :class:`Case` with one runner per contender (``"procly"``, ``"stdlib"``,
and optionally peers such as ``"faster-fifo"``).  The harness calls the runners interleaved
-- procly, stdlib, peers, procly, stdlib, ... -- in this one process tree, so that the noise
of a shared 2-core machine falls on every contender alike, and reports medians and the
procly/stdlib ratio of the medians.  Targets are ratios, never absolute times.

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
    "contender_module",
    "format_table",
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
    """Raised by a runner that cannot run here (a peer library is not installed, ...)."""


@dataclass(frozen=True)
class Case:
    """One benchmark: the same work done by each contender.

    ``metric`` is ``"time"`` (seconds per operation, lower is better) or ``"rate"``
    (units per second, higher is better).  ``target`` is the required procly/stdlib
    ratio: at most ``target`` for time, at least ``target`` for rate.
    """

    name: str
    metric: Literal["time", "rate"]
    unit: str
    target: float | None
    runners: dict[str, Callable[[], float]]


@dataclass
class CaseResult:
    section: str
    name: str
    metric: str
    unit: str
    target: float | None
    samples: dict[str, list[float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def median(self, who: str) -> float | None:
        values = self.samples.get(who)
        return statistics.median(values) if values else None

    @property
    def ratio(self) -> float | None:
        """procly / stdlib of the medians."""
        ours, theirs = self.median("procly"), self.median("stdlib")
        if ours is None or theirs is None or theirs == 0:
            return None
        return ours / theirs

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
            "medians": {who: self.median(who) for who in self.samples},
            "samples": self.samples,
            "skipped": self.skipped,
            "ratio_procly_over_stdlib": self.ratio,
            "target_met": self.met,
        }


def run_cases(section: str, cases: Sequence[Case], repeats: int, log: Callable[[str], None]) -> list[CaseResult]:
    """Run every case *repeats* times, contenders interleaved within each round."""
    results = []
    for case in cases:
        result = CaseResult(section, case.name, case.metric, case.unit, case.target)
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
                    continue
                except Exception as exc:  # a broken contender must not hide the others
                    result.skipped[who] = f"failed: {type(exc).__name__}: {exc}"
                    continue
                result.samples.setdefault(who, []).append(value)
        results.append(result)
    return results


def run_sections(
    names: Sequence[str] | None, quick: bool, repeats: int, log: Callable[[str], None]
) -> list[CaseResult]:
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
        started = time.perf_counter()
        results.extend(run_cases(section, module.cases(quick), repeats, log))
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


def format_table(results: Sequence[CaseResult]) -> str:
    """A plain-text table: medians per contender, ratio, target and whether it is met."""
    peers = sorted({who for r in results for who in r.samples} - {"procly", "stdlib"})
    header = ["section", "case", "procly", "stdlib", *peers, "procly/stdlib", "target", "met"]
    rows = [header]
    for r in results:
        target = "-" if r.target is None else ("<= " if r.metric == "time" else ">= ") + f"{r.target:g}x"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        cells = [_fmt(r.median(w), r.unit) if w not in r.skipped else "skipped" for w in ("procly", "stdlib", *peers)]
        rows.append([r.section, r.name, *cells, ratio, target, met])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [f"  {r.section}/{r.name}: {who} skipped: {why}" for r in results for who, why in r.skipped.items()]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def write_json(results: Sequence[CaseResult], path: str, meta: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "results": [r.as_json() for r in results]}, f, indent=2)
