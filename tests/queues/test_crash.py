"""A producer or consumer SIGKILLed mid-operation must not wedge the queue, lose another
item or duplicate one; nothing may leak in /dev/shm."""

from __future__ import annotations

import gc
import os
import pickle
import signal
import time
from typing import Any

import numpy as np

import procly
from procly._os._names import new_name
from procly._queues import _external, _ring

# -- children: each dies at a chosen point inside an operation (fault injection) -----------


def _die_mid_put(q: Any) -> None:
    """Take the lock, write half a record past TAIL, die holding the lock."""
    ring = q._ring
    ring._acquire()
    tail = ring._h[_ring._TAIL]
    payload = pickle.dumps("half-written" * 100)
    ring._dq[tail >> 3] = len(payload) | (_ring.INLINE << 32)
    start = _ring._DATA_OFF + tail + 8
    ring._mm[start : start + len(payload) // 2] = payload[: len(payload) // 2]
    os.kill(os.getpid(), signal.SIGKILL)


def _die_mid_joinable_commit(q: Any) -> None:
    """Write a whole record and the redo journal, die before applying it."""
    ring = q._ring
    ring._acquire()
    h = ring._h
    tail = h[_ring._TAIL]
    payload = pickle.dumps("journaled")
    ring._dq[tail >> 3] = len(payload) | (_ring.INLINE << 32)
    start = _ring._DATA_OFF + tail + 8
    ring._mm[start : start + len(payload)] = payload
    h[_ring._J_UNF] = h[_ring._UNFINISHED] + 1
    h[_ring._J_TAIL] = tail + _ring._record_size(len(payload))
    h[_ring._J_MASK] = _ring._M_TAIL | _ring._M_UNF
    os.kill(os.getpid(), signal.SIGKILL)


def _die_mid_get(q: Any) -> None:
    """Take the lock, copy the first record out, die before committing HEAD."""
    ring = q._ring
    ring._acquire()
    head = ring._h[_ring._HEAD]
    length = ring._dq[head >> 3] & 0xFFFFFFFF
    start = _ring._DATA_OFF + head + 8
    ring._mm[start : start + length]
    os.kill(os.getpid(), signal.SIGKILL)


def _die_after_creating_big_item(q: Any) -> None:
    """A big item's segment exists but was never published."""
    name = new_name("i")
    q._ring.add_pending(name)
    _external.write(name, b"stream", [memoryview(b"z" * 100_000)])
    os.kill(os.getpid(), signal.SIGKILL)


def _produce_forever(q: Any, started: Any) -> None:
    i = 0
    while True:
        if i % 7 == 3:
            q.put_many(range(i, i + 5))
            i += 5
        else:
            q.put(i)
            i += 1
        if 200 <= i < 206:
            started.put(i)


def _consume_forever(q: Any, report: Any, started: Any) -> None:
    n = 0
    while True:
        report.put(q.get())
        n += 1
        if n == 100:
            started.put(n)


def _create_and_die(report: Any) -> None:
    q = procly.Queue()
    report.put(q._ring.name)
    report.close()
    os.kill(os.getpid(), signal.SIGKILL)


# -- deterministic deaths, every start method -----------------------------------------------


def _run_to_death(ctx: Any, target: Any, *args: Any) -> None:
    p = ctx.Process(target=target, args=args)
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL


def test_producer_killed_mid_put(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q = ctx.Queue()
    q.put_many(["a", "b"])
    _run_to_death(ctx, _die_mid_put, q)
    # the dead owner's lock is recovered; the half record was never published
    assert q.qsize() == 2
    q.put("c")
    assert q.get_many(timeout=30) == ["a", "b", "c"]
    assert q.empty()


def test_joinable_killed_between_journal_and_commit(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q = ctx.JoinableQueue()
    q.put("first")
    _run_to_death(ctx, _die_mid_joinable_commit, q)
    assert q.get(timeout=30) == "first"  # recovery replays the journal...
    assert q.get(timeout=30) == "journaled"  # ...so the item and its task both count
    q.task_done()
    q.task_done()
    q.join()


def test_consumer_killed_mid_get(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q = ctx.Queue(maxsize=3)
    q.put_many([1, 2, 3])
    _run_to_death(ctx, _die_mid_get, q)
    assert q.full()
    assert [q.get(timeout=30) for _ in range(3)] == [1, 2, 3]  # nothing lost, none twice
    q.put(4, timeout=30)
    assert q.get(timeout=30) == 4


def test_unpublished_big_item_is_reclaimed() -> None:
    ctx = procly.get_context("fork")
    q = ctx.Queue()
    _run_to_death(ctx, _die_after_creating_big_item, q)
    prefix = os.environ["PROCLY_NAME_PREFIX"]
    assert any("-i-" in n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    q.put(np.ones(100_000))  # the queue works on
    assert q.get(timeout=30).sum() == 100_000
    del q
    gc.collect()
    assert [n for n in os.listdir("/dev/shm") if n.startswith(prefix)] == []


# -- SIGKILL at an arbitrary moment ----------------------------------------------------------


def test_producer_killed_at_random(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q, started = ctx.Queue(), ctx.Queue()  # a queue as the signal: no other primitive needed
    p = ctx.Process(target=_produce_forever, args=(q, started))
    p.start()
    started.get(timeout=60)
    p.kill()
    p.join(30)
    got: list[int] = []
    while not q.empty():
        got.extend(q.get_many())
    assert got == list(range(len(got)))  # a prefix: no gap, no duplicate
    assert len(got) >= 200
    q.put("still usable")
    assert q.get(timeout=30) == "still usable"


def test_consumer_killed_at_random(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q, report, started = ctx.Queue(), ctx.Queue(), ctx.Queue()
    n = 20_000
    q.put_many(range(n))
    p = ctx.Process(target=_consume_forever, args=(q, report, started))
    p.start()
    started.get(timeout=60)
    p.kill()
    p.join(30)
    reported: list[int] = []
    while not report.empty():
        reported.extend(report.get_many())
    remaining: list[int] = []
    while not q.empty():
        remaining.extend(q.get_many())
    assert reported == list(range(len(reported)))
    assert len(set(reported) | set(remaining)) == len(reported) + len(remaining)  # no duplicate
    missing = set(range(n)) - set(reported) - set(remaining)
    # at most the one item the consumer had taken but not yet reported when it died
    assert missing <= {len(reported)}
    assert remaining == list(range(n - len(remaining), n))
    q.put("still usable")
    assert q.get(timeout=30) == "still usable"


def test_queue_of_a_killed_creator_is_reclaimed() -> None:
    ctx = procly.get_context("fork")
    report = ctx.Queue()
    _run_to_death(ctx, _create_and_die, report)
    name = report.get(timeout=30)
    deadline = time.monotonic() + 20
    while os.path.exists(f"/dev/shm/{name}") and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded wait for the resource tracker's asynchronous reclaim
    assert not os.path.exists(f"/dev/shm/{name}")
