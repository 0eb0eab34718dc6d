"""Benchmarks of the worker pool (section ``pool``), 2 workers, ``fork`` for both contenders.

* ``apply_async`` one trivial task at a time: procly ``Pool`` vs ``multiprocessing.Pool``
  (target >= 5x);
* ``submit`` one trivial task at a time: procly ``ProcessPoolExecutor`` vs
  ``concurrent.futures.ProcessPoolExecutor`` (target >= 10x);
* ``imap`` / ``imap_unordered`` with no chunksize vs the standard ``imap(chunksize=1)``
  (its default; target >= 20x);
* ``map`` of trivial calls with the default chunksize (target >= 1.0x);
* 8 tasks each taking a distinct 32 MiB NumPy array (time, no target here: the issue's is
  against joblib, not installed);
* CPU-bound coarse tasks (time, target <= 1.0x, with two bare forked processes as the
  ceiling beside them);
* recovery: 10,000 ``apply_async`` calls with a worker SIGKILLed every 200 tasks, beside
  the same run undisturbed (procly only: the standard pool hangs on a dead worker);
* pool start + one task + shutdown (time, target <= 1.0x).

Pool start-up is outside the timed region except in the last case.  Every task is a real
call of a module-level function in a worker, and every result is received and checked by
the caller.  The standard library is imported lazily, inside the runners only.  Rates use
the same number of items for both contenders.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from ._harness import Case

__all__ = ("cases",)

WORKERS = 2


def _inc(x: int) -> int:
    return x + 1


def _ctx(who: str) -> Any:
    return importlib.import_module("procly" if who == "procly" else "multiprocessing").get_context(
        "fork"
    )


def _check(results: list[Any], n: int) -> None:
    if len(results) != n or results[0] != 1 or results[-1] != n:
        raise RuntimeError("wrong results")


def _apply_async(who: str, n: int) -> Callable[[], float]:
    def run() -> float:
        with _ctx(who).Pool(WORKERS) as pool:
            pool.apply(_inc, (0,))  # warm
            start = time.perf_counter()
            handles = [pool.apply_async(_inc, (i,)) for i in range(n)]
            results = [h.get() for h in handles]
            elapsed = time.perf_counter() - start
        _check(results, n)
        return n / elapsed

    return run


def _executor(who: str) -> Any:
    if who == "procly":
        from procly.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(WORKERS, mp_context=_ctx(who))
    from concurrent.futures import ProcessPoolExecutor as StdExecutor

    return StdExecutor(WORKERS, mp_context=_ctx(who))


def _submit(who: str, n: int) -> Callable[[], float]:
    def run() -> float:
        with _executor(who) as ex:
            ex.submit(_inc, 0).result()  # warm
            start = time.perf_counter()
            futures = [ex.submit(_inc, i) for i in range(n)]
            results = [f.result() for f in futures]
            elapsed = time.perf_counter() - start
        _check(results, n)
        return n / elapsed

    return run


def _imap(who: str, n: int, unordered: bool) -> Callable[[], float]:
    def run() -> float:
        with _ctx(who).Pool(WORKERS) as pool:
            pool.apply(_inc, (0,))
            start = time.perf_counter()
            method = pool.imap_unordered if unordered else pool.imap
            # procly: no chunksize (adaptive); stdlib: its default, chunksize=1
            results = list(method(_inc, range(n)))
            elapsed = time.perf_counter() - start
        if unordered:
            results.sort()
        _check(results, n)
        return n / elapsed

    return run


def _map(who: str, n: int) -> Callable[[], float]:
    def run() -> float:
        with _ctx(who).Pool(WORKERS) as pool:
            pool.apply(_inc, (0,))
            start = time.perf_counter()
            results = pool.map(_inc, range(n))
            elapsed = time.perf_counter() - start
        _check(results, n)
        return n / elapsed

    return run


def _start_one_shutdown(who: str) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        pool = _ctx(who).Pool(WORKERS)
        if pool.apply(_inc, (1,)) != 2:
            raise RuntimeError("wrong result")
        pool.close()
        pool.join()
        return time.perf_counter() - start

    return run


def _array_sum(a: Any) -> float:
    return float(a[0] + a[-1])


def _numpy_map(who: str, n_arrays: int, mib: int) -> Callable[[], float]:
    def run() -> float:
        try:
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy is a test dependency
            from ._harness import Skip

            raise Skip("numpy is not installed") from exc
        arrays = [np.full(mib << 17, float(i)) for i in range(n_arrays)]  # mib MiB of float64
        with _ctx(who).Pool(WORKERS) as pool:
            pool.apply(_inc, (0,))
            start = time.perf_counter()
            sums = pool.map(_array_sum, arrays, chunksize=1)
            elapsed = time.perf_counter() - start
        if sums != [2.0 * i for i in range(n_arrays)]:
            raise RuntimeError("wrong results")
        return elapsed

    return run


def _spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def _cpu_bound(who: str, n_tasks: int, seconds: float) -> Callable[[], float]:
    def run() -> float:
        with _ctx(who).Pool(WORKERS) as pool:
            pool.apply(_inc, (0,))
            start = time.perf_counter()
            pool.map(_spin, [seconds] * n_tasks, chunksize=1)
            return time.perf_counter() - start

    return run


def _bare_processes(n_tasks: int, seconds: float) -> Callable[[], float]:
    """The ceiling: two forked processes each spinning half the tasks, no pool at all."""
    import os

    def run() -> float:
        start = time.perf_counter()
        pids = []
        for share in (n_tasks // 2, n_tasks - n_tasks // 2):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - child
                for _ in range(share):
                    _spin(seconds)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        return time.perf_counter() - start

    return run


def _maybe_die(i: int) -> int:
    if i % 200 == 199:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    return i + 1


def _recovery(n: int, disturbed: bool) -> Callable[[], float]:
    def run() -> float:
        from procly.errors import WorkerCrashedError

        fn = _maybe_die if disturbed else _inc
        with _ctx("procly").Pool(WORKERS) as pool:
            pool.apply(_inc, (0,))
            start = time.perf_counter()
            handles = [pool.apply_async(fn, (i,)) for i in range(n)]
            lost = 0
            for i, h in enumerate(handles):
                try:
                    if h.get() != i + 1:
                        raise RuntimeError("wrong result")
                except WorkerCrashedError:
                    lost += 1
            elapsed = time.perf_counter() - start
        if lost != (n // 200 if disturbed else 0):
            raise RuntimeError(f"{lost} tasks lost")
        return elapsed

    return run


def cases(quick: bool) -> list[Case]:
    # The same number of items for both contenders in every case.
    # (The issue quotes 100,000 tasks for apply_async/submit; 20,000 keeps one call of the
    # standard library's executor near a second or two while the pool is long warm.)
    n_apply = 10_000 if quick else 20_000
    n_submit = 10_000 if quick else 20_000
    n_imap = 30_000 if quick else 60_000
    n_cpu, cpu_s = (8, 0.05) if quick else (16, 0.1)
    return [
        Case(
            "apply_async one at a time (tasks/s)",
            "rate",
            "tasks/s",
            5.0,
            {
                "procly": _apply_async("procly", n_apply),
                "stdlib": _apply_async("stdlib", n_apply),
            },
        ),
        Case(
            "Executor.submit one at a time (tasks/s)",
            "rate",
            "tasks/s",
            10.0,
            {
                "procly": _submit("procly", n_submit),
                "stdlib": _submit("stdlib", n_submit),
            },
        ),
        Case(
            "imap, no chunksize (stdlib: chunksize=1)",
            "rate",
            "items/s",
            20.0,
            {
                "procly": _imap("procly", n_imap, False),
                "stdlib": _imap("stdlib", n_imap, False),
            },
        ),
        Case(
            "imap_unordered, no chunksize (stdlib: chunksize=1)",
            "rate",
            "items/s",
            20.0,
            {
                "procly": _imap("procly", n_imap, True),
                "stdlib": _imap("stdlib", n_imap, True),
            },
        ),
        Case(
            "map of 100,000 trivial calls",
            "rate",
            "items/s",
            1.0,
            {"procly": _map("procly", 100_000), "stdlib": _map("stdlib", 100_000)},
        ),
        Case(
            "8 tasks, each a distinct 32 MiB NumPy array (map)",
            "time",
            "s",
            None,
            {"procly": _numpy_map("procly", 8, 32), "stdlib": _numpy_map("stdlib", 8, 32)},
        ),
        Case(
            f"CPU-bound: {n_cpu} tasks x {cpu_s} s (bare: 2 forked processes, the ceiling)",
            "time",
            "s",
            1.0,
            {
                "procly": _cpu_bound("procly", n_cpu, cpu_s),
                "stdlib": _cpu_bound("stdlib", n_cpu, cpu_s),
                "bare": _bare_processes(n_cpu, cpu_s),
            },
        ),
        Case(
            "recovery: 10,000 apply_async, a worker SIGKILLed every 200 (procly only)",
            "time",
            "s",
            None,
            {"procly": _recovery(10_000, True), "procly-undisturbed": _recovery(10_000, False)},
        ),
        Case(
            "pool start + one task + shutdown (fork)",
            "time",
            "s",
            1.0,
            {"procly": _start_one_shutdown("procly"), "stdlib": _start_one_shutdown("stdlib")},
        ),
    ]
