"""Benchmarks of shared memory and shared ctypes (section ``shm``).

* two processes incrementing one ``Value('i')`` under its lock (``with v.get_lock():
  v.value += 1``): total increments per second from a common start signal to both
  finishing (target: at least the standard library's);
* creating a 64 MiB ``SharedMemory``, attaching a second handle to it by name, closing both
  and unlinking: seconds per cycle (target: no slower than the standard library);
* handing a 256 MiB float64 array to a waiting child that sums it and answers: procly sends
  a shared array (``procly.shared_memory.share``) through a procly Pipe, the standard
  library pickles the same plain array through its own Pipe.  Seconds per hand-over
  (target: procly at most 1/20 of the standard library's time).

Every contender uses its ``fork`` context so that process start-up stays out of the
measurement; the children are started once per case and reused, and stopped (with the
arrays freed) when the case is done.  procly's shared array is made anew, untimed, for
each hand-over and dropped after it: a process forked while it exists (the standard
library's child, started in the first round) would be one more holder of it.  The
standard library is imported lazily, inside the runners only.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable
from typing import Any

from ._harness import Case, Skip, contender_module, race

__all__ = ("cases",)


# -- contended Value ---------------------------------------------------------------------------


def _bump(v: Any, n: int, ready: Any, go: Any) -> None:
    ready.release()
    go.wait()
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def _value_increments(who: str, n: int) -> Callable[[], float]:
    def run() -> float:
        ctx = contender_module(who).get_context("fork")
        v = ctx.Value("i", 0)
        elapsed = race(ctx, _bump, (v, n), 2)
        if v.value != 2 * n:
            raise RuntimeError(f"increments lost: {v.value} != {2 * n}")
        return 2 * n / elapsed

    return run


# -- SharedMemory create / attach / release ------------------------------------------------------


def _segment_cycle(who: str, size: int, k: int) -> Callable[[], float]:
    warm: list[bool] = []

    def run() -> float:
        if who == "procly":
            from procly.shared_memory import SharedMemory
        else:
            from multiprocessing.shared_memory import SharedMemory  # type: ignore[assignment]
        if not warm:  # both libraries start a tracker process on first use: not timed
            shm = SharedMemory(create=True, size=size)
            shm.close()
            shm.unlink()
            warm.append(True)
        start = time.perf_counter()
        for _ in range(k):
            shm = SharedMemory(create=True, size=size)
            other = SharedMemory(shm.name)
            other.close()
            shm.close()
            shm.unlink()
        return (time.perf_counter() - start) / k

    return run


# -- a big NumPy array to a child -----------------------------------------------------------------


def _summer(conn: Any) -> None:
    while True:
        try:
            arr = conn.recv()
        except EOFError:  # the benchmark process ended
            return
        if arr is None:
            return
        conn.send(float(arr.sum()))
        del arr


class _ArrayHandOver:
    """One waiting child per contender; each call sends the array and waits for the sum."""

    def __init__(self, who: str, nbytes: int) -> None:
        self.who = who
        self.nbytes = nbytes
        self.state: tuple[Any, Any, Any, float] | None = None

    def _setup(self) -> tuple[Any, Any, Any, float]:
        try:
            import numpy as np
        except ImportError:
            raise Skip("NumPy is not installed") from None
        ctx = contender_module(self.who).get_context("fork")
        size = self.nbytes // 8
        arr: Any = None if self.who == "procly" else np.ones(size)  # procly's: per call
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_summer, args=(there,), daemon=True)
        proc.start()
        there.close()
        # stop the child cleanly before the interpreter's own exit handling kills it (if
        # the harness did not close this at the end of the case)
        atexit.register(self.close)
        return arr, here, proc, float(size)

    def __call__(self) -> float:
        if self.state is None:
            self.state = self._setup()
        arr, here, _proc, expected = self.state
        if arr is None:
            from procly.shared_memory import ndarray

            arr = ndarray(int(expected))
            arr.fill(1.0)
        start = time.perf_counter()
        here.send(arr)
        total = here.recv()
        elapsed = time.perf_counter() - start
        if total != expected:
            raise RuntimeError(f"the child summed {total}, expected {expected}")
        return elapsed

    def close(self) -> None:
        if self.state is not None:
            _arr, here, proc, _ = self.state
            here.send(None)
            proc.join()
            here.close()
            self.state = None


def cases(quick: bool) -> list[Case]:
    n = 20_000 if quick else 100_000
    k = 20 if quick else 100
    nbytes = (64 if quick else 256) << 20
    return [
        Case(
            "Value('i') += 1 under its lock, 2 processes",
            "rate",
            "incr/s",
            1.0,
            {who: _value_increments(who, n) for who in ("procly", "stdlib")},
        ),
        Case(
            "SharedMemory 64 MiB create+attach+close+unlink",
            "time",
            "s",
            1.0,
            {who: _segment_cycle(who, 64 << 20, k) for who in ("procly", "stdlib")},
        ),
        Case(
            f"{nbytes >> 20} MiB NumPy array to a child, summed there",
            "time",
            "s",
            1 / 20,
            {who: _ArrayHandOver(who, nbytes) for who in ("procly", "stdlib")},
        ),
    ]
