"""Semaphore, BoundedSemaphore, Condition, Event and Barrier across every start method."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import procly
from procly.synchronize import LockNotOwnedError

# -- children (module level: spawn/forkserver import them) ---------------------------------


def _release_n(sem: Any, n: int) -> None:
    for _ in range(n):
        sem.release()


def _set_event(event: Any) -> None:
    event.set()


def _wait_event(event: Any, seen: Any) -> None:
    if event.wait(30):
        seen.release()


def _consume(cond: Any, path: str, n: int, done: Any) -> None:
    """Take *n* items from the file-backed queue, waiting on *cond* for each."""
    for _ in range(n):
        with cond:
            cond.wait_for(lambda: int(Path(path).read_text() or 0) > 0, 30)
            Path(path).write_text(str(int(Path(path).read_text()) - 1))
    done.release()


def _barrier_party(barrier: Any, path: str) -> None:
    index = barrier.wait(30)
    with open(path, "a") as f:
        f.write(f"{index}\n")


def _barrier_expect_broken(barrier: Any, outcome: Any) -> None:
    try:
        barrier.wait(30)
    except threading.BrokenBarrierError:
        outcome.release()


def _action_writes(path: str) -> None:
    with open(path, "a") as f:
        f.write("action\n")


class _Action:
    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> None:
        _action_writes(self.path)


# -- Semaphore / BoundedSemaphore ------------------------------------------------------------


def test_semaphore_counts() -> None:
    sem = procly.get_context("fork").Semaphore(2)
    assert repr(sem) == "<Semaphore(value=2)>"
    assert sem.acquire() and sem.acquire(False)
    assert sem.acquire(False) is False
    assert sem.get_value() == 0
    start = time.monotonic()
    assert sem.acquire(timeout=0.1) is False
    assert 0.09 <= time.monotonic() - start < 2.0
    for _ in range(3):
        sem.release()  # a plain Semaphore may rise above its initial value
    assert sem.get_value() == 3
    with sem:
        assert sem.get_value() == 2


def test_bounded_semaphore() -> None:
    sem = procly.get_context("fork").BoundedSemaphore(2)
    assert repr(sem) == "<BoundedSemaphore(value=2, maxvalue=2)>"
    with pytest.raises(ValueError, match="too many times"):
        sem.release()
    sem.acquire()
    sem.release()
    assert sem.get_value() == 2


def test_semaphore_bad_values() -> None:
    ctx = procly.get_context("fork")
    with pytest.raises(ValueError):
        ctx.Semaphore(-1)
    with pytest.raises(ValueError):
        ctx.BoundedSemaphore(2**40)


def test_semaphore_across_processes(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    sem = ctx.Semaphore(0)
    p = ctx.Process(target=_release_n, args=(sem, 5))
    p.start()
    for _ in range(5):
        assert sem.acquire(timeout=30)
    p.join(30)
    assert p.exitcode == 0
    assert sem.acquire(False) is False


# -- Condition -------------------------------------------------------------------------------


def test_condition_misuse_and_timeout() -> None:
    ctx = procly.get_context("fork")
    cond = ctx.Condition()
    for call in (cond.wait, cond.notify, cond.notify_all):
        with pytest.raises(LockNotOwnedError):
            call()
    with pytest.raises(TypeError):
        ctx.Condition(threading.Lock())
    with cond:
        start = time.monotonic()
        assert cond.wait(0.1) is False
        assert 0.09 <= time.monotonic() - start < 2.0
        assert cond.wait_for(lambda: 0, 0.05) == 0
        assert cond.wait_for(lambda: "yes", 0) == "yes"
    assert repr(cond).startswith("<Condition(<RLock(None, 0)>, 0)")


def test_condition_wait_keeps_rlock_depth() -> None:
    cond = procly.get_context("fork").Condition()
    with cond, cond:
        cond.wait(0.01)
        assert "MainProcess, 2" in repr(cond)


def test_condition_notify_wakes_thread() -> None:
    cond = procly.get_context("fork").Condition(procly.get_context("fork").Lock())
    box: list[int] = []
    got: list[bool] = []

    def consumer() -> None:
        with cond:
            got.append(bool(cond.wait_for(lambda: box, 30)))

    t = threading.Thread(target=consumer)
    t.start()
    with cond:
        box.append(1)
        cond.notify()
    t.join(30)
    assert got == [True]


def test_condition_producer_consumer(start_method: str, tmp_path: Path) -> None:
    ctx = procly.get_context(start_method)
    cond = ctx.Condition()
    done = ctx.Semaphore(0)
    queue = tmp_path / "items"
    queue.write_text("0")
    consumers = [ctx.Process(target=_consume, args=(cond, str(queue), 5, done)) for _ in range(2)]
    for p in consumers:
        p.start()
    for _ in range(10):
        with cond:
            queue.write_text(str(int(queue.read_text()) + 1))
            cond.notify()
    for _ in consumers:
        assert done.acquire(timeout=60)
    for p in consumers:
        p.join(30)
        assert p.exitcode == 0
    assert queue.read_text() == "0"


# -- Event -----------------------------------------------------------------------------------


def test_event_in_one_process() -> None:
    event = procly.get_context("fork").Event()
    assert not event.is_set()
    start = time.monotonic()
    assert event.wait(0.1) is False
    assert 0.09 <= time.monotonic() - start < 2.0
    event.set()
    assert event.is_set() and event.wait() is True and event.wait(0) is True
    event.clear()
    assert not event.is_set()


def test_event_across_processes(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    event, seen = ctx.Event(), ctx.Semaphore(0)
    waiters = [ctx.Process(target=_wait_event, args=(event, seen)) for _ in range(2)]
    for p in waiters:
        p.start()
    setter = ctx.Process(target=_set_event, args=(event,))
    setter.start()
    for _ in waiters:
        assert seen.acquire(timeout=60)
    for p in [*waiters, setter]:
        p.join(30)
        assert p.exitcode == 0
    assert event.is_set()


# -- Barrier ---------------------------------------------------------------------------------


def test_barrier_validation() -> None:
    ctx = procly.get_context("fork")
    with pytest.raises(ValueError):
        ctx.Barrier(0)
    with pytest.raises(TypeError):
        ctx.Barrier("2")
    with pytest.raises(TypeError):
        ctx.Barrier(2, action=3)
    b = ctx.Barrier(3)
    assert (b.parties, b.n_waiting, b.broken) == (3, 0, False)


def test_barrier_timeout_abort_reset() -> None:
    b = procly.get_context("fork").Barrier(2, timeout=0.1)
    start = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()
    assert 0.09 <= time.monotonic() - start < 2.0
    assert b.broken
    with pytest.raises(threading.BrokenBarrierError):
        b.wait()
    b.reset()
    assert not b.broken
    b.abort()
    assert b.broken
    b.reset()
    t = threading.Thread(target=b.wait)
    t.start()
    assert b.wait(30) in (0, 1)
    t.join()


def test_barrier_action_raising_breaks_it() -> None:
    def boom() -> None:
        raise KeyError("action")

    b = procly.get_context("fork").Barrier(1, action=boom)
    with pytest.raises(KeyError):
        b.wait()
    assert b.broken


def test_barrier_across_processes(start_method: str, tmp_path: Path) -> None:
    ctx = procly.get_context(start_method)
    out = tmp_path / "out"
    out.write_text("")
    barrier = ctx.Barrier(3, action=_Action(str(out)))
    procs = [ctx.Process(target=_barrier_party, args=(barrier, str(out))) for _ in range(2)]
    for p in procs:
        p.start()
    mine = barrier.wait(30)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    lines = out.read_text().split()
    assert lines.count("action") == 1 and lines[0] == "action"
    assert sorted([int(x) for x in lines[1:]] + [mine]) == [0, 1, 2]
    # the barrier is reusable for the next round
    procs = [ctx.Process(target=_barrier_party, args=(barrier, str(out))) for _ in range(2)]
    for p in procs:
        p.start()
    barrier.wait(30)
    for p in procs:
        p.join(30)
    assert out.read_text().split().count("action") == 2


def test_barrier_abort_and_reset_reach_other_processes(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    barrier = ctx.Barrier(3)
    outcome = ctx.Semaphore(0)
    procs = [ctx.Process(target=_barrier_expect_broken, args=(barrier, outcome)) for _ in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 30
    while barrier.n_waiting < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a condition with a bound, not ordering by sleep
    assert barrier.n_waiting == 2
    barrier.reset()  # waiters get BrokenBarrierError
    for _ in procs:
        assert outcome.acquire(timeout=30)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert not barrier.broken
    p = ctx.Process(target=_barrier_expect_broken, args=(barrier, outcome))
    barrier.abort()
    p.start()
    assert outcome.acquire(timeout=30)
    p.join(30)
