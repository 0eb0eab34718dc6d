"""The same behavioural checks of the synchronization primitives, run against the standard
library's :mod:`multiprocessing` and against procly (the docs are the spec)."""

from __future__ import annotations

import importlib
import pickle
import threading
import time
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(params=["multiprocessing", "procly"])
def mp(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(str(request.param)).get_context("fork")  # type: ignore[no-any-return]


def test_lock_protocol(mp: Any) -> None:
    lock = mp.Lock()
    assert repr(lock) == "<Lock(owner=None)>"
    assert lock.acquire() is True
    assert repr(lock) == "<Lock(owner=MainProcess)>"
    assert lock.acquire(False) is False
    assert lock.acquire(True, 0.01) is False
    assert lock.acquire(timeout=-5) is False
    lock.release()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    with lock as entered:
        assert entered is True


def test_lock_other_thread_may_release(mp: Any) -> None:
    lock = mp.Lock()
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join()
    assert lock.acquire(False) is True
    lock.release()


def test_rlock_protocol(mp: Any) -> None:
    rlock = mp.RLock()
    assert repr(rlock) == "<RLock(None, 0)>"
    assert rlock.acquire() and rlock.acquire()
    assert repr(rlock) == "<RLock(MainProcess, 2)>"
    raised: list[BaseException] = []

    def other() -> None:
        try:
            rlock.release()
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert isinstance(raised[0], AssertionError)
    rlock.release()
    rlock.release()
    with pytest.raises(AssertionError):
        rlock.release()


def test_semaphores(mp: Any) -> None:
    sem = mp.Semaphore(2)
    assert repr(sem) == "<Semaphore(value=2)>"
    assert sem.get_value() == 2
    assert sem.acquire() and sem.acquire() and sem.acquire(False) is False
    sem.release()
    sem.release()
    sem.release()
    assert sem.get_value() == 3
    bounded = mp.BoundedSemaphore(1)
    assert repr(bounded) == "<BoundedSemaphore(value=1, maxvalue=1)>"
    with pytest.raises(ValueError, match="released too many times"):
        bounded.release()
    with pytest.raises((ValueError, OSError)):  # stdlib: OSError(EINVAL); procly: ValueError
        mp.Semaphore(-1)


def test_condition(mp: Any) -> None:
    cond = mp.Condition()
    with pytest.raises(AssertionError):  # procly: LockNotOwnedError is also one
        cond.wait(0)
    with pytest.raises(AssertionError):
        cond.notify()
    with cond:
        start = time.monotonic()
        assert cond.wait(0.05) is False
        assert time.monotonic() - start >= 0.04
        assert cond.wait_for(lambda: 7, 1) == 7
        assert cond.wait_for(lambda: None, 0.01) is None
        cond.notify_all()
    assert repr(cond) == "<Condition(<RLock(None, 0)>, 0)>"


def test_event(mp: Any) -> None:
    event = mp.Event()
    assert event.is_set() is False
    assert event.wait(0.01) is False
    event.set()
    assert event.wait() is True
    event.clear()
    assert event.is_set() is False


def test_barrier(mp: Any) -> None:
    seen: list[int] = []
    barrier = mp.Barrier(2, action=lambda: seen.append(1), timeout=10)
    assert (barrier.parties, barrier.n_waiting, barrier.broken) == (2, 0, False)
    results: list[int] = []
    t = threading.Thread(target=lambda: results.append(barrier.wait()))
    t.start()
    results.append(barrier.wait())
    t.join()
    assert sorted(results) == [0, 1] and seen == [1]
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.01)
    assert barrier.broken
    barrier.reset()
    assert not barrier.broken
    barrier.abort()
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    # (procly also refuses Barrier(0) with ValueError; the 3.11 stdlib accepts it)


@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore", "Condition", "Event"])
def test_pickling_outside_spawning(mp: Any, kind: str) -> None:
    with pytest.raises(RuntimeError, match="through inheritance"):
        pickle.dumps(getattr(mp, kind)())
