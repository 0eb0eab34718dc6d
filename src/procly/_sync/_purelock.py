"""Lock and RLock on named semaphores, which survive the death of their holder (layer 2).

This is the *pure* implementation: it works wherever :mod:`posix_ipc` does, and
:mod:`._lock` uses it when the C extension (:mod:`._fastlock`) is unavailable or
``PROCLY_PURE=1`` is set.

Each lock is a named semaphore of value 1 (see :mod:`._semlock`) plus one shared slot
(:mod:`._arena`) whose word ``OWNER`` holds the token of the process holding it
(:mod:`._owner`; 0 when free).  The holder writes its token right after taking the
semaphore and clears it right before giving it back, so a non-zero token always names a
process that took the lock and has not released it yet.

**When the holder dies** (SIGKILL, segfault, ``os._exit``) the semaphore stays at 0 for
ever; the standard library's waiters block for ever.  Here a blocked waiter wakes every
:data:`CHECK_INTERVAL` seconds and asks whether the process named by ``OWNER`` still runs
(zombies and reused pids count as dead).  If not, it *repairs* the lock -- under a record
lock on the slot, so exactly one process does -- by clearing ``OWNER`` and posting the
semaphore, then raises :class:`~procly.errors.OwnerDiedError`.  The lock is then free: other
waiters take it normally, and so does a retry.  The data it protected may be
half-updated, which is why the repairer gets an exception rather than the lock.

Known blind spot: a holder killed in the few hundred nanoseconds between taking the
semaphore and writing its token (or between clearing it and posting) leaves ``OWNER`` at 0,
and that cannot be told from a live holder about to write it; waiters then block as in the
standard library.
"""

from __future__ import annotations

import fcntl
import threading
import time
from typing import Any

from .._errors import LockNotOwnedError, OwnerDiedError
from . import _arena
from ._lockbase import CHECK_INTERVAL, OwnedLockMixin
from ._owner import IDENTITY, is_alive, pid_of
from ._semlock import BusyError, SemLock, _deadline, timed_acquire

__all__ = ("Lock", "OwnedLock", "RLock")

# Words of a lock's slot.
OWNER = 0
REPAIRS = 1

_get_ident = threading.get_ident


class OwnedLock(OwnedLockMixin, SemLock):
    """What Lock and RLock share: the owner word, contended waiting, repair."""

    _slot: _arena.Slot

    def __init__(self, *, ctx: Any = None) -> None:
        self._slot = _arena.REGISTRY.allocate()
        super().__init__(1, ctx=ctx)
        import weakref

        weakref.finalize(self, _arena.REGISTRY.release, self._slot)

    def _setup(self) -> None:
        super()._setup()
        self._rec = self._slot.words
        self._owner_tid = 0
        self._count = 0

    def _extra_state(self) -> dict[str, Any]:
        return {"slot": self._slot}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        self._slot = state["slot"]

    def __reduce__(self) -> tuple[Any, ...]:
        # By function, not by class: procly.synchronize.Lock may be the other implementation
        # in the receiving process.
        return (_rebuild, (isinstance(self, RLock), self.__getstate__()))

    # -- contended path -----------------------------------------------------------------------
    def _acquire_contended(self, block: bool, timeout: float | None) -> bool:
        """Wait for the semaphore, checking the holder's liveness; ``True`` once taken.

        Raises :class:`OwnerDiedError` if this call repaired a lock abandoned by a dead
        holder.
        """
        self._check_abandoned()
        if not block:
            return False
        deadline = _deadline(timeout)
        while True:
            if deadline is None:
                wait = CHECK_INTERVAL
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = min(left, CHECK_INTERVAL)
            if timed_acquire(self._sem, wait):
                return True
            self._check_abandoned()

    def _check_abandoned(self) -> None:
        token = self._rec[OWNER]
        if token == 0 or token == IDENTITY.token or is_alive(token):
            return
        slot = self._slot
        arena = slot.arena
        with arena.guard:
            # Record locks are per process and released by the kernel if we die here.
            fcntl.lockf(arena.fd, fcntl.LOCK_EX, 1, slot.offset)
            try:
                if self._rec[OWNER] != token:
                    return  # someone else repaired it already
                self._rec[OWNER] = 0
                self._rec[REPAIRS] += 1
                self._sem.release()
            finally:
                fcntl.lockf(arena.fd, fcntl.LOCK_UN, 1, slot.offset)
        pid = pid_of(token)
        raise OwnerDiedError(
            f"process {pid} died while holding {type(self).__name__} without releasing it; "
            "the lock has been released, the data it protected may be inconsistent",
            pid=pid,
        )

    # -- helpers for Condition and repr -------------------------------------------------------
    def _holder_pid(self) -> int:
        token = self._rec[OWNER]
        return pid_of(token) if token else 0

    def _is_mine(self) -> bool:
        return (
            self._count > 0
            and self._owner_tid == _get_ident()
            and self._rec[OWNER] == IDENTITY.token
        )

    def _release_save(self) -> int:
        """Release every level (for :meth:`Condition.wait`); returns the count."""
        count = self._count
        self._count = 0
        self._owner_tid = 0
        self._rec[OWNER] = 0
        self._sem.release()
        return count


class Lock(OwnedLock):
    """A non-recursive lock shared by processes (:class:`multiprocessing.Lock`).

    Any thread or process may release it.  Beyond the standard library: when the holding
    process dies, a waiter raises :class:`~procly.errors.OwnerDiedError` within about
    :data:`CHECK_INTERVAL` seconds and the lock becomes free again.

    Raises :class:`ValueError` when released while unlocked.
    """

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Take the lock; ``False`` if *block* is false or *timeout* ran out first.

        Raises :class:`~procly.errors.OwnerDiedError` (lock left free) if the holder died.
        """
        try:
            self._sem.acquire(0)
        except BusyError:
            if not self._acquire_contended(block, timeout):
                return False
        self._rec[OWNER] = IDENTITY.token
        self._owner_tid = _get_ident()
        self._count = 1
        return True

    def release(self) -> None:
        """Release the lock.  Raises :class:`ValueError` if it is not locked."""
        rec = self._rec
        if not rec[OWNER] and self._sem.value:
            raise ValueError("semaphore or lock released too many times")
        self._count = 0
        rec[OWNER] = 0
        self._sem.release()

    def __repr__(self) -> str:
        return self._lock_repr()


class RLock(OwnedLock):
    """A recursive lock shared by processes (:class:`multiprocessing.RLock`).

    It is owned by one thread of one process, which may acquire it again; it is free once
    released as many times.  Beyond the standard library: when the holding process dies, a
    waiter raises :class:`~procly.errors.OwnerDiedError` and the lock becomes free again.

    Raises :class:`~procly.errors.LockNotOwnedError` (an :class:`AssertionError`, as in the
    standard library, and a :class:`RuntimeError`, as in :mod:`threading`) when released by
    a thread that does not own it.
    """

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Take the lock, or count one more level if this thread owns it already.

        Returns ``False`` if *block* is false or *timeout* ran out first; raises
        :class:`~procly.errors.OwnerDiedError` (lock left free) if the holder died.
        """
        me = _get_ident()
        if self._owner_tid == me and self._count and self._rec[OWNER] == IDENTITY.token:
            self._count += 1
            return True
        try:
            self._sem.acquire(0)
        except BusyError:
            if not self._acquire_contended(block, timeout):
                return False
        self._rec[OWNER] = IDENTITY.token
        self._owner_tid = me
        self._count = 1
        return True

    def release(self) -> None:
        """Drop one level; the lock is free after the last.

        Raises :class:`~procly.errors.LockNotOwnedError` if this thread does not own it.
        """
        if not self._is_mine():
            raise LockNotOwnedError("attempt to release recursive lock not owned by thread")
        self._count -= 1
        if not self._count:
            self._owner_tid = 0
            self._rec[OWNER] = 0
            self._sem.release()

    def __repr__(self) -> str:
        return self._rlock_repr()


def _rebuild(recursive: bool, state: dict[str, Any]) -> OwnedLock:
    cls = RLock if recursive else Lock
    lock = cls.__new__(cls)
    lock.__setstate__(state)
    return lock
