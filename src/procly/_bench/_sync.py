"""Benchmarks of the synchronization primitives (section ``sync``).

* uncontended ``Lock`` acquire+release pairs per second in one process (target: at least
  half the standard library's, which is C code);
* the same for ``RLock`` (no target);
* one ``Lock`` contended by two processes, each doing ``with lock: pass`` in a loop: total
  pairs per second, timed from a common start signal to both processes finishing.

Each case also runs the peer ``procly-pure``: procly's fallback implementation (named
semaphores, what ``PROCLY_PURE=1`` or a build without the C extension gives), constructed
explicitly, so the gain of the C path stays visible.

Both contenders use their ``fork`` context so that process start-up stays out of the
measurement.  The standard library is imported lazily, inside the runners only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._harness import Case, contender_module, race

__all__ = ("cases",)


def _pairs(lock: Any, n: int) -> float:
    acquire, release = lock.acquire, lock.release
    start = time.perf_counter()
    for _ in range(n):
        acquire()
        release()
    return n / (time.perf_counter() - start)


def _make(who: str, ctx: Any, kind: str) -> Any:
    """A new Lock/RLock of *who*: ``procly-pure`` is procly's fallback implementation."""
    if who == "procly-pure":
        from .._sync import _purelock

        return getattr(_purelock, kind)(ctx=ctx)
    return getattr(ctx, kind)()


def _uncontended(who: str, kind: str, n: int) -> Callable[[], float]:
    made: list[Any] = []

    def run() -> float:
        if not made:
            made.append(_make(who, contender_module(who).get_context("fork"), kind))
        return _pairs(made[0], n)

    return run


def _contend(lock: Any, n: int, ready: Any, go: Any) -> None:
    ready.release()
    go.wait()
    for _ in range(n):
        with lock:
            pass


def _contended(who: str, n: int) -> Callable[[], float]:
    def run() -> float:
        ctx = contender_module(who).get_context("fork")
        return 2 * n / race(ctx, _contend, (_make(who, ctx, "Lock"), n), 2)

    return run


_WHO = ("procly", "stdlib", "procly-pure")


def cases(quick: bool) -> list[Case]:
    n = 50_000 if quick else 300_000
    m = 5_000 if quick else 30_000
    return [
        Case(
            "Lock uncontended acquire+release",
            "rate",
            "pairs/s",
            0.5,
            {who: _uncontended(who, "Lock", n) for who in _WHO},
        ),
        Case(
            "RLock uncontended acquire+release",
            "rate",
            "pairs/s",
            None,
            {who: _uncontended(who, "RLock", n) for who in _WHO},
        ),
        Case(
            "Lock contended by 2 processes",
            "rate",
            "pairs/s",
            None,
            {who: _contended(who, m) for who in _WHO},
        ),
    ]
