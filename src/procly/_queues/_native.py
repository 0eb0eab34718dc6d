"""The two kernel primitives a queue needs, reached through :mod:`ctypes` (layer 2).

* **A process-shared, robust mutex** (``pthread_mutex_t`` living inside the queue's shared
  memory).  *Robust* means that when its owner dies -- SIGKILL included -- the next
  :func:`lock` learns about it (``EOWNERDEAD``) instead of blocking forever, so it can repair
  the state the dead owner may have left half-updated.  A named POSIX semaphore cannot do
  that, which is why the queue does not sit on ``posix_ipc`` semaphores.
* **Futex wait/wake** on a 32-bit sequence word in shared memory.  A waiter reads the word
  under the mutex, releases the mutex and sleeps only if the word still holds what it read;
  a waker bumps the word under the mutex and wakes.  No wakeup can be lost in between, and a
  process that dies while sleeping leaves nothing behind in the kernel (a process-shared
  condition variable would: glibc may hand a signal to a dead waiter).

Every call goes through ``ctypes.CDLL``, which releases the GIL: a thread blocked on the
mutex or in a futex wait lets the other threads of its process run.  The ring's hot paths
only *try* the mutex and unlock it through the C extension ``procly._os._native``
(``mutex_trylock``/``mutex_unlock``, ~40 ns instead of ~200 ns through ctypes; neither
blocks, so keeping the GIL is fine) when it was built, and come here for the blocking rest.

Linux only for now (futex).  macOS would need ``os_sync_wait_on_address`` and a
non-robust mutex; :func:`available` says whether this module works here.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys
from typing import Any

__all__ = (
    "MUTEX_SIZE",
    "available",
    "futex_wait",
    "futex_wake",
    "lock",
    "lock_slow",
    "make_consistent",
    "mutex_init",
    "raw_functions",
    "unlock",
)

#: Bytes reserved for one ``pthread_mutex_t`` (40 on glibc x86_64, 48 on aarch64, 64 on macOS).
MUTEX_SIZE = 64

_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "i686": 240, "i386": 240}
_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Libc:
    """The bound C functions (the module's one state object; built once at import)."""

    def __init__(self) -> None:
        self.ok = sys.platform.startswith("linux") and platform.machine().lower() in _SYS_FUTEX
        if not self.ok:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        self.sys_futex = _SYS_FUTEX[platform.machine().lower()]
        self.syscall = libc.syscall
        self.syscall.restype = ctypes.c_long
        # Called with a prebuilt c_void_p and no argtypes: the cheapest ctypes call path
        # (about 0.2 us; argtypes conversion of a Python int costs half as much again).
        self.lock = libc.pthread_mutex_lock
        self.trylock = libc.pthread_mutex_trylock
        self.unlock = libc.pthread_mutex_unlock
        self.consistent = libc.pthread_mutex_consistent
        self.attr_init = libc.pthread_mutexattr_init
        self.attr_setpshared = libc.pthread_mutexattr_setpshared
        self.attr_setrobust = libc.pthread_mutexattr_setrobust
        self.mutex_init = libc.pthread_mutex_init
        for fn in (self.lock, self.trylock, self.unlock, self.consistent):
            fn.restype = ctypes.c_int


_LIBC = _Libc()


def raw_functions() -> tuple[Any, Any]:
    """The bare ``pthread_mutex_trylock`` and ``pthread_mutex_unlock`` for hot paths
    (call them with a :class:`ctypes.c_void_p`; trylock returns 0 or an errno)."""
    return _LIBC.trylock, _LIBC.unlock


def available() -> bool:
    """Whether robust process-shared mutexes and futexes work on this platform."""
    return _LIBC.ok


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise OSError(rc, f"{what}: {os.strerror(rc)}")


def mutex_init(address: ctypes.c_void_p) -> None:
    """Initialise a robust, process-shared mutex at *address* (zeroed shared memory).

    Raises :class:`OSError` if the C library refuses (it never should on Linux).
    """
    attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes on glibc
    _check(_LIBC.attr_init(attr), "pthread_mutexattr_init")
    _check(_LIBC.attr_setpshared(attr, _PTHREAD_PROCESS_SHARED), "pthread_mutexattr_setpshared")
    _check(_LIBC.attr_setrobust(attr, _PTHREAD_MUTEX_ROBUST), "pthread_mutexattr_setrobust")
    _check(_LIBC.mutex_init(address, attr), "pthread_mutex_init")


#: How many times :func:`lock` retries a busy mutex before sleeping in the kernel.
_TRY_SPINS = 64


def lock(address: ctypes.c_void_p) -> bool:
    """Acquire the mutex at *address*; return True if its previous owner had died.

    A busy mutex is retried a few times first: queue critical sections last about a
    microsecond, and sleeping on a contended robust mutex costs both sides a system call.
    When True is returned, the mutex is held and already marked consistent again: the
    caller must repair whatever the dead owner may have left half-done *before* unlocking.
    Raises :class:`OSError` if the mutex is unusable.
    """
    rc: int = _LIBC.trylock(address)
    if rc == 0:
        return False
    return lock_slow(address, rc)


def lock_slow(address: ctypes.c_void_p, rc: int) -> bool:
    """The rest of :func:`lock` once a first ``trylock`` returned *rc* (nonzero); hot
    paths call :data:`trylock` themselves and only come here when it failed."""
    trylock = _LIBC.trylock
    for _ in range(_TRY_SPINS):
        if rc != errno.EBUSY:
            break
        rc = trylock(address)
    if rc == errno.EBUSY:
        rc = _LIBC.lock(address)
    if rc == 0:
        return False
    if rc == errno.EOWNERDEAD:
        _check(_LIBC.consistent(address), "pthread_mutex_consistent")
        return True
    raise OSError(rc, f"pthread_mutex_lock: {os.strerror(rc)}")


def make_consistent(address: ctypes.c_void_p) -> None:
    """After a ``trylock`` returned ``EOWNERDEAD``: mark the mutex usable again."""
    _check(_LIBC.consistent(address), "pthread_mutex_consistent")


def unlock(address: ctypes.c_void_p) -> None:
    """Release the mutex at *address* (held by the calling thread)."""
    _LIBC.unlock(address)


def futex_wait(address: int, expected: int, timeout: float | None) -> None:
    """Sleep while the 32-bit word at *address* equals *expected*, at most *timeout* seconds.

    Returns on a wake, a timeout, a signal, or at once if the word already differs; the
    caller re-checks its condition in every case (spurious returns are allowed).
    """
    if timeout is None:
        ts = None
    else:
        timeout = max(timeout, 0.0)
        sec = int(timeout)
        ts = ctypes.byref(_Timespec(sec, int((timeout - sec) * 1e9)))
    _LIBC.syscall(
        ctypes.c_long(_LIBC.sys_futex),
        ctypes.c_void_p(address),
        ctypes.c_int(_FUTEX_WAIT),
        ctypes.c_uint(expected),
        ts,
        None,
        ctypes.c_int(0),
    )


def futex_wake(address: int, count: int) -> None:
    """Wake up to *count* processes/threads sleeping on the word at *address*."""
    _LIBC.syscall(
        ctypes.c_long(_LIBC.sys_futex),
        ctypes.c_void_p(address),
        ctypes.c_int(_FUTEX_WAKE),
        ctypes.c_int(count),
        None,
        None,
        ctypes.c_int(0),
    )
