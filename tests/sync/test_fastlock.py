"""The C lock (procly._os._native via procly._sync._fastlock): what only it does, its bad
inputs, and the whole sync test set re-run on the pure path (``PROCLY_PURE=1``)."""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import procly
from procly._sync import _fastlock, _lock, _purelock
from procly._sync._owner import IDENTITY
from procly.synchronize import LockNotOwnedError, OwnerDiedError

native = pytest.mark.skipif(not _fastlock.AVAILABLE, reason="C extension not built here")
ROOT = Path(__file__).resolve().parents[2]


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll *predicate* (observing another process's state, not ordering events)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _poke(lock: Any, state: int, token: int) -> None:
    """Write the lock's STATE and TOKEN words directly (see the layout in _native.c)."""
    slot = lock._slot
    struct.pack_into("=I", slot.arena.map, slot.offset, state)
    struct.pack_into("=q", slot.arena.map, slot.offset + 8, token)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not us (blocks reading its stdin until the test ends)."""
    p = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        yield p
    finally:
        p.kill()
        p.wait()
        assert p.stdin is not None
        p.stdin.close()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- selection ------------------------------------------------------------------------------


def test_pure_env_selects_pure_path() -> None:
    code = (
        "from procly._sync import _lock, _purelock; import procly\n"
        "assert not _lock.NATIVE and _lock.Lock is _purelock.Lock\n"
        "assert type(procly.Lock()) is _purelock.Lock and type(procly.RLock()) is _purelock.RLock\n"
    )
    env = dict(os.environ, PROCLY_PURE="1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@native
def test_native_is_the_default_when_built() -> None:
    if os.environ.get("PROCLY_PURE", "") not in ("", "0"):
        pytest.skip("this run forces the pure path")
    assert _lock.NATIVE
    assert isinstance(procly.Lock(), _fastlock.Lock)
    assert isinstance(procly.RLock(), _fastlock.RLock)
    # the methods are the C ones: no Python frame on the fast path
    for name in ("acquire", "release", "__enter__", "__exit__"):
        assert type(getattr(procly.Lock(), name)).__name__ == "builtin_function_or_method"


@pytest.mark.timeout(300)
def test_sync_tests_pass_on_pure_path() -> None:
    """Every sync test again, in a pytest process where PROCLY_PURE=1 picks the pure locks."""
    if not _lock.NATIVE:
        pytest.skip("this run already uses the pure path")
    env = dict(os.environ, PROCLY_PURE="1")
    env.pop("PROCLY_NAME_PREFIX", None)  # the inner conftest sets its own
    args = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    args += ["tests/sync", "tests/compat/test_sync_compat.py"]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


# -- the C type's contract ------------------------------------------------------------------


@native
def test_shared_lock_bad_inputs() -> None:
    from procly._os import _native

    with pytest.raises(BufferError, match="not writable"):
        _native.SharedLock(b"\0" * 64, 0)  # read-only memory
    with pytest.raises(ValueError, match="aligned"):
        _native.SharedLock(bytearray(64), 4)
    with pytest.raises(ValueError, match="aligned"):
        _native.SharedLock(bytearray(16), 0)  # too small for the three words
    with pytest.raises(ValueError, match="aligned"):
        _native.SharedLock(bytearray(64), -8)
    unattached = _native.SharedLock.__new__(_native.SharedLock)
    with pytest.raises(ValueError, match="not attached"):
        unattached.acquire()
    with pytest.raises(ValueError, match="not attached"):
        unattached.release()
    with pytest.raises(TypeError):
        _native.configure(owner_died=1, not_owned=2, is_alive=3, check_interval=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _native.set_identity(5, (1 << 22) | 6)  # token of another pid


@native
def test_acquire_argument_errors() -> None:
    lock = _fastlock.Lock(ctx=procly.get_context("fork"))
    with pytest.raises(TypeError, match="at most 2"):
        lock.acquire(True, 1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        lock.acquire(blocking=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        lock.acquire(True, block=True)  # type: ignore[misc]
    with pytest.raises(TypeError, match="timeout must be a number"):
        lock.acquire(timeout=[1])  # type: ignore[arg-type]
    assert lock.acquire(block=True, timeout=1.5) is True
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=float("nan")) is False  # NaN: do not wait
    lock.release()
    with pytest.raises(ValueError, match="released too many times"):
        lock.__exit__(None, None, None)


@native
def test_rlock_ownership_in_c() -> None:
    rlock = _fastlock.RLock(ctx=procly.get_context("fork"))
    with pytest.raises(LockNotOwnedError, match="not owned"):
        rlock.release()
    with rlock:
        assert rlock._is_mine() and rlock._count == 1 and rlock._holder_pid() == os.getpid()
        assert rlock.acquire(False) is True and rlock._count == 2
        assert rlock._release_save() == 2
        assert not rlock._is_mine() and rlock._holder_pid() == 0
        rlock._acquire_restore(2)
        rlock.release()
    assert rlock._holder_pid() == 0 and not rlock._is_mine()


def _report_identity(path: str) -> None:
    from procly._os import _native

    Path(path).write_text(repr((_native.identity(), os.getpid(), IDENTITY.token)))


@native
def test_identity_handed_to_c_and_refreshed_after_fork(tmp_path: Path) -> None:
    from procly._os import _native

    assert _native.identity() == (IDENTITY.pid, IDENTITY.token)
    out = tmp_path / "identity"
    p = procly.get_context("fork").Process(target=_report_identity, args=(str(out),))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    seen, child_pid, child_token = eval(out.read_text())
    assert seen == (child_pid, child_token) and child_pid == p.pid
    assert child_token != IDENTITY.token and child_token >> 22  # start time included


def test_missing_extension_falls_back_to_pure_path() -> None:
    code = (
        "import sys; sys.modules['procly._os._native'] = None  # as if it were not built\n"
        "from procly._sync import _fastlock, _lock, _purelock; import procly\n"
        "assert not _fastlock.AVAILABLE and not _lock.NATIVE\n"
        "lock = procly.Lock(); assert type(lock) is _purelock.Lock\n"
        "with lock, procly.Condition(): pass\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# -- owner death, decided by C ----------------------------------------------------------------


@native
def test_holder_dead_before_writing_token_is_detected() -> None:
    """The pure path's blind spot: the pid in the lock word is enough."""
    lock = _fastlock.Lock(ctx=procly.get_context("fork"))
    dead = _dead_pid()
    _poke(lock, dead, 0)
    with pytest.raises(OwnerDiedError) as info:
        lock.acquire(timeout=10)
    assert info.value.pid == dead and str(dead) in str(info.value)
    assert lock._holder()[1] == 1  # one repair recorded
    assert lock.acquire(False) is True
    lock.release()


@native
def test_zombie_and_reused_pid_count_as_dead(sleeper: subprocess.Popen[bytes]) -> None:
    lock = _fastlock.RLock(ctx=procly.get_context("fork"))
    # a live pid whose start time does not match the token: the holder's pid was reused
    _poke(lock, sleeper.pid, (12345 << 22) | sleeper.pid)
    with pytest.raises(OwnerDiedError):
        lock.acquire(False)  # a failed try-acquire checks too, as on the pure path
    # a zombie (exited, not reaped by its parent, which is us)
    z = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, z.pid, os.WEXITED | os.WNOWAIT)
    _poke(lock, z.pid | 0x40000000, 0)  # with the WAITERS bit
    try:
        with pytest.raises(OwnerDiedError):
            lock.acquire(timeout=10)
    finally:
        z.wait()
    assert lock._holder()[1] == 2
    with lock:
        pass


@native
def test_live_holder_is_waited_for(sleeper: subprocess.Popen[bytes]) -> None:
    lock = _fastlock.Lock(ctx=procly.get_context("fork"))
    _poke(lock, sleeper.pid, 0)  # token not written yet: only the pid is asked
    start = time.monotonic()
    assert lock.acquire(timeout=0.35) is False  # several check slices, never a repair
    assert time.monotonic() - start >= 0.34
    assert lock._holder() == (sleeper.pid, 0)
    assert "SomeOtherProcess" in repr(lock)
    lock.release()  # a Lock may be released by anyone
    assert lock._holder() == (0, 0)


def test_pickles_as_its_own_kind() -> None:
    """Each implementation rebuilds through its own module (not procly.synchronize.Lock)."""
    from procly._proc._spawning import spawning
    from procly._serial._fdpass import receiving_fds, sending_fds

    ctx = procly.get_context("spawn")
    kinds: list[type[Any]] = [_purelock.Lock, _purelock.RLock]
    if _fastlock.AVAILABLE:
        kinds += [_fastlock.Lock, _fastlock.RLock]
    for cls in kinds:
        lock = cls(ctx=ctx)
        with spawning(), sending_fds() as channel:
            data = pickle.dumps(lock)
        with receiving_fds(channel.fds):  # the arena is known here: the duplicate is closed
            clone = pickle.loads(data)
        assert type(clone) is cls
        assert lock.acquire(False)
        assert clone.acquire(False) is False  # the same shared lock
        lock.release()
        assert clone.acquire(False)
        clone.release()


@native
def test_condition_accepts_either_kind() -> None:
    ctx = procly.get_context("fork")
    for lock in (_purelock.Lock(ctx=ctx), _fastlock.Lock(ctx=ctx)):
        cond = procly.synchronize.Condition(lock, ctx=ctx)
        with cond:
            assert cond.wait(0.01) is False
            cond.notify_all()
        assert repr(lock) == "<Lock(owner=None)>"
    with pytest.raises(TypeError, match="procly Lock or RLock"):
        procly.synchronize.Condition(threading.Lock(), ctx=ctx)


_INTERRUPTED = """
import procly
lock = procly.get_context("fork").Lock()
lock.acquire()
print("ready", flush=True)
try:
    lock.acquire()  # blocks for ever: the holder is this very process
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def test_ctrl_c_interrupts_blocked_acquire() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_INTERRUPTED)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        # bounded: see the main thread asleep in the kernel (when the kernel shows it)
        _wait_until(lambda: "futex" in _wchan(proc.pid) or "sem" in _wchan(proc.pid), 10)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 5.0
        assert "interrupted" in out, err
        assert proc.returncode == 0
    finally:
        proc.kill()
        proc.wait()


# -- stress: mutual exclusion and no lost wake-up under heavy contention ----------------------


def _hammer(lock: Any, counter: Any, n: int) -> None:
    def work() -> None:
        for _ in range(n):
            with lock:
                value = counter.value  # a read-modify-write that loses updates without the lock
                counter.value = value + 1

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_heavy_contention_threads_and_processes(kind: str) -> None:
    ctx = procly.get_context("fork")
    lock = getattr(ctx, kind)()
    counter = ctx.RawValue("q", 0)
    n = 20_000
    procs = [ctx.Process(target=_hammer, args=(lock, counter, n)) for _ in range(2)]
    for p in procs:
        p.start()
    _hammer(lock, counter, n)  # a lost wake-up would hang here (test timeout)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert counter.value == 3 * 2 * n
    assert lock.acquire(False) is True
    lock.release()
