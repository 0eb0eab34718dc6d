"""Lock and RLock: semantics, misuse, many processes, threads, and holders that die."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import procly
from procly._sync._lock import NATIVE
from procly.synchronize import Lock, LockNotOwnedError, OwnerDiedError, RLock

# -- children (module level: spawn/forkserver import them) ---------------------------------


def _hold_forever(lock: Any, held: Any) -> None:
    lock.acquire()
    held.set()
    time.sleep(3600)


def _count(lock: Any, path: str, n: int) -> None:
    for _ in range(n):
        with lock:  # a read-modify-write that loses updates without mutual exclusion
            p = Path(path)
            p.write_text(str(int(p.read_text()) + 1))


def _count_threads(lock: Any, path: str, n: int) -> None:
    threads = [threading.Thread(target=_count, args=(lock, path, n)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _try_acquire(lock: Any, result: Any) -> None:
    # result: a Semaphore released once if the lock was free, never otherwise
    if lock.acquire(timeout=0.05):
        result.release()
        lock.release()


def _release_foreign(lock: Any, done: Any) -> None:
    lock.release()
    done.set()


# -- single process ----------------------------------------------------------------------------


def test_lock_basics() -> None:
    lock = procly.get_context("fork").Lock()
    assert isinstance(lock, Lock)
    assert repr(lock) == "<Lock(owner=None)>"
    assert lock.acquire() is True
    assert repr(lock) == "<Lock(owner=MainProcess)>"
    assert lock.acquire(False) is False
    assert lock.acquire(block=False, timeout=10) is False
    lock.release()
    with lock:
        assert lock.acquire(timeout=0) is False
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()


def test_lock_timeout_bounds() -> None:
    lock = procly.get_context("fork").Lock()
    lock.acquire()
    for timeout in (0.05, 0.3):
        start = time.monotonic()
        assert lock.acquire(timeout=timeout) is False
        elapsed = time.monotonic() - start
        assert timeout - 0.01 <= elapsed < timeout + 2.0
    assert lock.acquire(timeout=-1) is False  # negative means "do not wait", as stdlib
    lock.release()


def test_lock_released_by_other_thread() -> None:
    lock = procly.get_context("fork").Lock()
    lock.acquire()
    t = threading.Thread(target=lock.release)
    t.start()
    t.join()
    assert lock.acquire(False) is True
    lock.release()


def test_lock_blocks_other_thread_until_release() -> None:
    lock = procly.get_context("fork").Lock()
    lock.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=30)))
    t.start()
    assert repr(lock) == "<Lock(owner=MainProcess)>"
    lock.release()
    t.join()
    assert got == [True]
    lock.release()


def test_rlock_recursion_and_ownership() -> None:
    rlock = procly.get_context("fork").RLock()
    assert isinstance(rlock, RLock)
    assert repr(rlock) == "<RLock(None, 0)>"
    assert rlock.acquire() and rlock.acquire() and rlock.acquire(False)
    assert repr(rlock) == "<RLock(MainProcess, 3)>"
    errors: list[BaseException] = []

    def other() -> None:
        try:
            rlock.release()
        except BaseException as exc:
            errors.append(exc)
        errors.append(rlock.acquire(timeout=0.05))  # type: ignore[arg-type]

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert isinstance(errors[0], LockNotOwnedError)
    assert isinstance(errors[0], AssertionError) and isinstance(errors[0], RuntimeError)
    assert errors[1] is False
    for _ in range(3):
        rlock.release()
    assert repr(rlock) == "<RLock(None, 0)>"
    with pytest.raises(AssertionError, match="not owned"):
        rlock.release()
    with rlock, rlock:
        pass


def test_pickling_outside_spawning_is_refused() -> None:
    ctx = procly.get_context("spawn")
    for obj in (
        ctx.Lock(),
        ctx.RLock(),
        ctx.Semaphore(),
        ctx.Condition(),
        ctx.Event(),
        ctx.Barrier(2),
    ):
        with pytest.raises(RuntimeError, match="through inheritance"):
            pickle.dumps(obj)


def test_fork_context_lock_cannot_go_to_spawned_child() -> None:
    lock = procly.get_context("fork").Lock()
    p = procly.get_context("spawn").Process(target=_try_acquire, args=(lock, None))
    # the launcher wraps the reducer's RuntimeError into a SerializationError naming the lock
    with pytest.raises(pickle.PicklingError, match="'fork' context"):
        p.start()


def test_bad_arguments() -> None:
    lock = procly.get_context("fork").Lock()
    lock.acquire()
    with pytest.raises(TypeError, match="timeout must be a number"):
        lock.acquire(True, "soon")  # type: ignore[arg-type]
    lock.release()
    with pytest.raises(ValueError):
        procly.get_context("fork").Semaphore(-1)


# -- across processes ------------------------------------------------------------------------


def test_lock_excludes_other_process(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    lock = ctx.Lock()
    result = ctx.Semaphore(0)
    lock.acquire()
    p = ctx.Process(target=_try_acquire, args=(lock, result))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert result.acquire(False) is False  # the child could not take it
    lock.release()
    p = ctx.Process(target=_try_acquire, args=(lock, result))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert result.acquire(timeout=5) is True
    assert repr(lock) == "<Lock(owner=None)>"


def test_lock_released_by_other_process(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    lock = ctx.Lock()
    done = ctx.Event()
    lock.acquire()
    p = ctx.Process(target=_release_foreign, args=(lock, done))
    p.start()
    assert done.wait(30)
    p.join(30)
    assert lock.acquire(False) is True
    lock.release()


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_every_increment_counted(start_method: str, kind: str, tmp_path: Path) -> None:
    ctx = procly.get_context(start_method)
    lock = getattr(ctx, kind)()
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [ctx.Process(target=_count, args=(lock, str(counter), 150)) for _ in range(3)]
    procs.append(ctx.Process(target=_count_threads, args=(lock, str(counter), 50)))
    for p in procs:
        p.start()
    _count(lock, str(counter), 50)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert int(counter.read_text()) == 3 * 150 + 2 * 50 + 50


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_holder_killed_waiter_proceeds(start_method: str, kind: str) -> None:
    ctx = procly.get_context(start_method)
    lock = getattr(ctx, kind)()
    held = ctx.Event()
    p = ctx.Process(target=_hold_forever, args=(lock, held))
    p.start()
    try:
        assert held.wait(30)
        assert "SomeOtherProcess" in repr(lock)
        outcome: list[object] = []
        entering = threading.Event()

        def waiter() -> None:
            entering.set()
            try:
                outcome.append(lock.acquire())  # no timeout: would block for ever in stdlib
            except OwnerDiedError as exc:  # keep no traceback: it would pin the lock in a cycle
                outcome.append((type(exc), exc.pid, str(exc)))
            outcome.append(time.monotonic())

        t = threading.Thread(target=waiter)
        t.start()
        assert entering.wait(30)
        killed_at = time.monotonic()
        os.kill(p.pid, signal.SIGKILL)  # the child stays a zombie until joined below
        t.join(10)
        assert not t.is_alive()
    finally:
        p.kill()
        p.join(30)
    kind_, pid, message = outcome[0]  # type: ignore[misc]
    assert kind_ is OwnerDiedError, outcome
    assert pid == p.pid and str(p.pid) in message
    assert isinstance(outcome[1], float) and outcome[1] - killed_at < 2.0
    # the lock was left free: exactly one OwnerDiedError, then normal service
    assert lock.acquire(timeout=5) is True
    lock.release()


def test_abandoned_lock_detected_by_later_acquirer(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    lock = ctx.Lock()
    held = ctx.Event()
    p = ctx.Process(target=_hold_forever, args=(lock, held))
    p.start()
    assert held.wait(30)
    p.kill()
    p.join(30)
    with pytest.raises(OwnerDiedError):
        lock.acquire(timeout=10)
    assert lock.acquire(False) is True
    lock.release()


def _use_other_lock(other: Any, done: Any) -> None:
    with other:
        done.release()


def test_lock_held_by_thread_at_fork_does_not_block_other_locks() -> None:
    ctx = procly.get_context("fork")
    held, other, done = ctx.Lock(), ctx.Lock(), ctx.Semaphore(0)
    holding, finish = threading.Event(), threading.Event()

    def holder() -> None:
        with held:
            holding.set()
            finish.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert holding.wait(30)
        p = ctx.Process(target=_use_other_lock, args=(other, done))
        p.start()
        assert done.acquire(timeout=30)
        p.join(30)
        assert p.exitcode == 0
    finally:
        finish.set()
        t.join()


def _increment_value(value: Any, n: int) -> None:
    for _ in range(n):
        with value.get_lock():
            value.value += 1


def test_value_lock_from_this_layer(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    value = ctx.Value("i", 0)  # Value(lock=True) takes ctx.RLock() from this layer
    procs = [ctx.Process(target=_increment_value, args=(value, 200)) for _ in range(2)]
    for p in procs:
        p.start()
    _increment_value(value, 200)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert value.value == 600


def test_creator_sigkilled_leaves_no_semaphore_names() -> None:
    """Names of a spawn-context primitive are reclaimed by the tracker when its creator is
    SIGKILLed (the creator never got to unlink them)."""
    import subprocess
    import sys

    prefix = os.environ["PROCLY_NAME_PREFIX"] + "k"
    code = (
        "import os, signal, procly\n"
        "ctx = procly.get_context('spawn')\n"
        "keep = [ctx.Lock(), ctx.Condition(), ctx.Semaphore(3)]\n"
        "print(sum(prefix in n for n in os.listdir('/dev/shm')), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    ).replace("prefix", repr(prefix))
    env = dict(os.environ, PROCLY_NAME_PREFIX=prefix)
    env.pop("PROCLY_TRACKER", None)  # its own tracker, as a fresh program would have
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    # pure: 1 (Lock) + 4 (Condition: RLock + 3) + 1; futex locks have no name at all
    assert int(proc.stdout) == (4 if NATIVE else 6)
    deadline = time.monotonic() + 10
    while any(prefix in n for n in os.listdir("/dev/shm")) and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded wait for the tracker, not ordering
    assert not [n for n in os.listdir("/dev/shm") if prefix in n]
