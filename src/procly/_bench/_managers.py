"""Benchmarks of managers (section ``managers``).

* a managed dict used by two processes at once, each doing ``d[k] = v`` then ``d[k]`` on
  its own keys: total operations per second, timed from a common barrier to the slower
  process's end (target: at least 1.5x the standard library);
* iterating a managed dict of 10,000 items (``for k in d``): items per second (target: at
  least 10x the standard library, which makes one round trip per key);
* one ``d[k] = v`` round trip in one process (no target);
* creating a proxy (``manager.list()``): seconds per creation (no target).

Each runner starts its own manager (``fork`` context of its library) and fills it before
the clock starts; start-up and shutdown stay out of the measurement.  The standard library
is imported lazily, inside the runners only.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from ._harness import Case

__all__ = ("cases",)


def _ctx(module_name: str) -> Any:
    """The fork context of procly or of the standard library's multiprocessing."""
    module = importlib.import_module("procly" if module_name == "procly" else "multiprocessing")
    return module.get_context("fork")


def _hammer(d: Any, barrier: Any, who: int, n: int) -> None:
    keys = [f"{who}-{i % 100}" for i in range(n)]
    len(d)  # connect (and authenticate) before the clock starts, for both libraries
    barrier.wait()
    start = time.perf_counter()
    for key in keys:
        d[key] = who
        d[key]
    d[("time", who)] = time.perf_counter() - start


def _two_processes(module_name: str, n: int) -> Callable[[], float]:
    def run() -> float:
        ctx = _ctx(module_name)
        with ctx.Manager() as m:
            d = m.dict()
            barrier = ctx.Barrier(2)
            procs = [ctx.Process(target=_hammer, args=(d, barrier, who, n)) for who in (0, 1)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            slowest: float = max(d[("time", 0)], d[("time", 1)])
        return 2 * 2 * n / slowest

    return run


def _iterate(module_name: str, size: int) -> Callable[[], float]:
    def run() -> float:
        ctx = _ctx(module_name)
        with ctx.Manager() as m:
            d = m.dict()
            d.update({i: i for i in range(size)})
            start = time.perf_counter()
            count = 0
            for _ in d:
                count += 1
            elapsed = time.perf_counter() - start
        assert count == size
        return size / elapsed

    return run


def _setitem(module_name: str, n: int) -> Callable[[], float]:
    def run() -> float:
        ctx = _ctx(module_name)
        with ctx.Manager() as m:
            d = m.dict()
            start = time.perf_counter()
            for i in range(n):
                d[i % 64] = i
            elapsed = time.perf_counter() - start
        return elapsed / n

    return run


def _create(module_name: str, n: int) -> Callable[[], float]:
    def run() -> float:
        ctx = _ctx(module_name)
        with ctx.Manager() as m:
            start = time.perf_counter()
            for _ in range(n):
                m.list()
            elapsed = time.perf_counter() - start
        return elapsed / n

    return run


def cases(quick: bool) -> list[Case]:
    n = 2000 if quick else 5000
    size = 10_000
    return [
        Case(
            "managed dict set+get, 2 processes",
            "rate",
            "ops/s",
            1.5,
            {who: _two_processes(who, n) for who in ("procly", "stdlib")},
        ),
        Case(
            "iterate a managed dict of 10,000 items",
            "rate",
            "items/s",
            10.0,
            {who: _iterate(who, size) for who in ("procly", "stdlib")},
        ),
        Case(
            "managed dict d[k] = v, 1 process",
            "time",
            "s",
            None,
            {who: _setitem(who, n) for who in ("procly", "stdlib")},
        ),
        Case(
            "create a proxy (manager.list())",
            "time",
            "s",
            None,
            {who: _create(who, n // 10) for who in ("procly", "stdlib")},
        ),
    ]
