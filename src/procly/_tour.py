"""``python -m procly tour``: the seed examples, run with procly, each explained as it runs.

The worker functions live at module level so that every start method can find them.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import procly

__all__ = ("run_tour",)


def _nap(index: int) -> None:
    time.sleep(random.uniform(0.0, 0.05))
    sys.stdout.write(f"    process {index} (pid {os.getpid()}) done\n")  # one write per line
    sys.stdout.flush()


def _send_cube(conn: Any, n: int) -> None:
    conn.send(n**3)
    conn.close()


def _receive(conn: Any, out: Any) -> None:
    out.send(f"receiver (pid {os.getpid()}) got {conn.recv()}")


def _put_cube_plus_one(queue: Any, n: int) -> None:
    queue.put(n**3 + 1)


def _cube(n: int) -> int:
    return n**3


def _add_to_shared(value: Any, array: Any, index: int) -> None:
    with value.get_lock():
        value.value += index
    array[index] = index * index


def _processes() -> None:
    print("  Ten processes started, each sleeps a random moment, all joined (order varies):")
    procs = [procly.Process(target=_nap, args=(i,)) for i in range(10)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print(f"    exit codes: {[p.exitcode for p in procs]}")


def _pipe() -> None:
    print("  A Pipe: a sender process sends 19**3, a receiver process reads it:")
    recv_end, send_end = procly.Pipe(duplex=False)
    report_r, report_w = procly.Pipe(duplex=False)
    sender = procly.Process(target=_send_cube, args=(send_end, 19))
    receiver = procly.Process(target=_receive, args=(recv_end, report_w))
    receiver.start()
    sender.start()
    print(f"    {report_r.recv()}  (19**3 = {19**3})")
    sender.join()
    receiver.join()
    for conn in (recv_end, send_end, report_r, report_w):
        conn.close()


def _queue() -> None:
    print("  A Queue: ten processes each put n**3 + 1 for n = 1..10; the parent collects them:")
    queue = procly.Queue()
    procs = [procly.Process(target=_put_cube_plus_one, args=(queue, n)) for n in range(1, 11)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=30) for _ in procs)
    for p in procs:
        p.join()
    queue.close()
    print(f"    collected: {results}")


def _pool() -> None:
    print("  A Pool of 2 workers maps n**3 over 1..10:")
    with procly.Pool(2) as pool:
        print(f"    {pool.map(_cube, range(1, 11))}")


def _shared() -> None:
    print("  A shared Value and Array changed by four processes:")
    value = procly.Value("i", 0)
    array = procly.Array("i", 4)
    procs = [procly.Process(target=_add_to_shared, args=(value, array, i)) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    print(f"    value = {value.value} (0+1+2+3), array = {list(array)} (squares)")


_PARTS: list[tuple[str, tuple[str, ...], str, Callable[[], None]]] = [
    ("Process", ("Process",), "issue 2", _processes),
    ("Pipe", ("Process", "Pipe"), "issue 2", _pipe),
    ("Queue", ("Process", "Queue"), "issue 4", _queue),
    ("Pool", ("Pool",), "issue 5", _pool),
    ("shared memory", ("Process", "Value", "Array"), "issue 3", _shared),
]


def run_tour() -> int:
    """Run every part whose implementation has landed; say plainly which have not."""
    method = procly.get_start_method() if hasattr(procly, "get_start_method") else "?"
    print(f"procly tour (start method: {method})\n")
    failures = 0
    for title, needs, issue, part in _PARTS:
        print(f"[{title}]")
        missing = [name for name in needs if not hasattr(procly, name)]
        if missing:
            print(f"  not available yet: {', '.join(missing)} ({issue} has not landed)\n")
            continue
        started = time.perf_counter()
        try:
            part()
        except Exception as exc:
            failures += 1
            print(f"  FAILED: {type(exc).__name__}: {exc}")
        print(f"  ({time.perf_counter() - started:.2f} s)\n")
    return 1 if failures else 0
