"""Benchmark section ``queues``: procly's queues vs ``multiprocessing.Queue`` and faster-fifo.

Every runner call builds a fresh queue, starts its processes with the contender's own
``fork`` context (faster-fifo, which has no processes of its own, uses the standard
library's), lets them signal *ready* through a pipe, and starts the clock when it releases
them all at once, so process start-up is never timed.  The clock stops when the parent has
received its last item (and, for 2->2, the other consumer has exited after receiving its
share).  Items are really unpickled on the receiving side; arrays are checked.

* small messages (ints), 1 producer -> 1 consumer, ``put``/``get``: msg/s (target 3x stdlib);
* the same with 2 producers -> 2 consumers: msg/s (target 3x stdlib);
* batches: ``put_many`` of 100 / ``get_many`` of up to 1000 (faster-fifo: its own
  ``put_many``/``get_many``; the standard library has no batch API, so it runs its plain
  ``put``/``get`` loop): msg/s.  The issue's target is 2x faster-fifo's figure; the harness
  reports ratios to stdlib, so this case has no harness target -- compare the columns;
* 64 MiB NumPy arrays, 1 -> 1: MB/s, twice: on a *new* queue (the first items of a queue's
  life), and on an *open* queue that already carried two arrays, untimed, before the clock
  starts (the stream a program sees once it runs; the target, 10x stdlib, applies here).
  The difference is procly's: a new queue's first big items fill fresh shared-memory pages,
  which the kernel must allocate and zero, while later ones reuse segments the consumer
  released.  faster-fifo gets a buffer big enough for two arrays (it cannot carry an item
  larger than its buffer at all).

The standard library and faster-fifo are imported lazily, inside the runners only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ._harness import Case, import_peer

__all__ = ("cases",)

_MiB = 1 << 20
_ARRAY_BYTES = 64 * _MiB
_WHO = ("procly", "stdlib", "faster-fifo")


def _context(who: str) -> Any:
    if who == "procly":
        import procly

        return procly.get_context("fork")
    import multiprocessing

    return multiprocessing.get_context("fork")


def _make_queue(who: str, ctx: Any, buffer_bytes: int) -> Any:
    if who == "faster-fifo":
        faster_fifo = import_peer("faster_fifo", "faster-fifo")
        return faster_fifo.Queue(max_size_bytes=buffer_bytes)
    return ctx.Queue()


def _get_many(who: str, q: Any, batch: int) -> list[Any]:
    if who == "faster-fifo":
        return list(q.get_many(block=True, timeout=60, max_messages_to_get=batch))
    return list(q.get_many(max_items=batch, block=True, timeout=60))


# -- what the processes do (module level; all contenders use fork) -------------------------


def _wait_go(ready_w: int, go_r: int) -> None:
    os.write(ready_w, b"r")
    os.read(go_r, 1)


def _produce(
    q: Any, n: int, batch: int, payload: Any, warm: int, ready_w: int, go_r: int
) -> None:
    if batch:
        batches = [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]
        put_many = q.put_many
        _wait_go(ready_w, go_r)
        for items in batches:
            put_many(items)
    else:
        put = q.put
        for _ in range(warm):  # received before the clock starts
            put(payload)
        _wait_go(ready_w, go_r)
        if payload is None:
            for i in range(n):
                put(i)
        else:
            for _ in range(n):
                put(payload)


def _consume(who: str, q: Any, n: int, batch: int) -> None:
    got = 0
    if batch:
        while got < n:
            got += len(_get_many(who, q, batch))
    else:
        get = q.get
        for _ in range(n):
            get(True, 60)


def _consume_child(who: str, q: Any, n: int, batch: int, ready_w: int, go_r: int) -> None:
    _wait_go(ready_w, go_r)
    _consume(who, q, n, batch)


# -- runners -----------------------------------------------------------------------------


def _run(
    who: str,
    producers: int,
    consumers: int,
    n: int,
    batch: int,
    payload_factory: Callable[[], Any] | None,
    buffer_bytes: int,
    check: Callable[[Any], None] | None = None,
    warm: int = 0,
) -> float:
    """Time *producers* x *n* items through a new queue; return seconds.  With *warm*, the
    (single) producer first puts *warm* more payloads, which the parent receives and
    checks before the clock starts."""
    ctx = _context(who)
    q = _make_queue(who, ctx, buffer_bytes)
    payload = payload_factory() if payload_factory is not None else None
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    share = producers * n // consumers
    put_batch = batch if who != "stdlib" else 0  # the standard library has no batch API
    get_batch = 10 * put_batch
    procs = [
        ctx.Process(target=_produce, args=(q, n, put_batch, payload, warm, ready_w, go_r))
        for _ in range(producers)
    ] + [
        ctx.Process(target=_consume_child, args=(who, q, share, get_batch, ready_w, go_r))
        for _ in range(consumers - 1)
    ]
    try:
        for p in procs:
            p.start()
        for _ in range(warm):
            (check or _ignore)(q.get(True, 60))
        for _ in procs:
            os.read(ready_r, 1)
        start = time.perf_counter()
        os.write(go_w, b"g" * len(procs))
        if check is None:
            _consume(who, q, share, get_batch)
        else:
            for _ in range(share):
                check(q.get(True, 60))
        for p in procs[producers:]:
            p.join()
        elapsed = time.perf_counter() - start
        for p in procs[:producers]:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise RuntimeError(f"a {who} benchmark process failed")
        return elapsed
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        if who != "faster-fifo":
            q.close()
            q.join_thread()


def _messages(who: str, producers: int, consumers: int, n: int, batch: int) -> Callable[[], float]:
    def run() -> float:
        return producers * n / _run(who, producers, consumers, n, batch, None, 10 * _MiB)

    return run


def _array() -> Any:
    import numpy as np

    return np.ones(_ARRAY_BYTES // 8)


def _check_array(arr: Any) -> None:
    if arr.nbytes != _ARRAY_BYTES or arr[-1] != 1.0:
        raise RuntimeError("array arrived damaged")


def _ignore(item: Any) -> None:
    pass


def _arrays(who: str, count: int, warm: int) -> Callable[[], float]:
    def run() -> float:
        elapsed = _run(who, 1, 1, count, 0, _array, 3 * _ARRAY_BYTES, _check_array, warm)
        return count * _ARRAY_BYTES / _MiB / elapsed

    return run


def cases(quick: bool) -> list[Case]:
    n = 20_000 if quick else 100_000
    arrays = 2 if quick else 4
    return [
        Case(
            "small messages 1->1 put/get",
            "rate",
            "msg/s",
            3.0,
            {who: _messages(who, 1, 1, n, 0) for who in _WHO},
        ),
        Case(
            "small messages 2->2 put/get",
            "rate",
            "msg/s",
            3.0,
            {who: _messages(who, 2, 2, n // 2, 0) for who in _WHO},
        ),
        Case(
            "small messages 1->1 put_many(100)/get_many (stdlib: put/get; target 2x faster-fifo)",
            "rate",
            "msg/s",
            None,
            {who: _messages(who, 1, 1, 2 * n, 100) for who in _WHO},
        ),
        Case(
            "64 MiB NumPy arrays 1->1, new queue",
            "rate",
            "MB/s",
            None,
            {who: _arrays(who, arrays, 0) for who in _WHO},
        ),
        Case(
            "64 MiB NumPy arrays 1->1, open queue (2 arrays through it before the clock)",
            "rate",
            "MB/s",
            10.0,
            {who: _arrays(who, arrays, 2) for who in _WHO},
        ),
    ]
