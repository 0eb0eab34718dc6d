"""Condition variables shared by processes (layer 2).

A condition is its lock (an :class:`~procly.synchronize.RLock` unless given) plus three
counting semaphores, all shared::

    waiter (any process, holding the lock)        notifier (holding the lock)
    -------------------------------------         ---------------------------------------
    sleeping += 1                                 forget sleepers that timed out:
    release the lock fully                          for each token in woken: sleeping -= 1
    wake.acquire(timeout)  <--------------------  for k sleepers (k <= n): sleeping -= 1,
    woken += 1  ------------------------------->     wake += 1
    re-acquire the lock (same depth)              wait for k tokens of woken, then drop
                                                  any wake token nobody took (timeouts)

* ``sleeping`` counts waiters that announced themselves (under the lock).
* ``wake`` carries one token per waiter being woken.
* ``woken`` carries one acknowledgement per waiter that left ``wake.acquire`` (woken or
  timed out).  Because the notifier waits for those while it *holds the lock*, no new
  waiter can sneak in and steal a token meant for one that was already waiting -- which is
  what makes ``notify_all`` wake exactly the current waiters (``Barrier`` relies on it).

Like the standard library, a waiter killed while asleep is never acknowledged: a later
``notify`` that picks it blocks.  A waiter that times out at the same moment as a
``notify`` may absorb that notification.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .._errors import LockNotOwnedError
from ._lock import OWNED_LOCK_TYPES, RLock
from ._purelock import OwnedLock
from ._semlock import Semaphore

__all__ = ("Condition",)

T = TypeVar("T")


class Condition:
    """A condition variable shared by processes (:class:`multiprocessing.Condition`).

    :meth:`wait`, :meth:`notify` and :meth:`notify_all` raise
    :class:`~procly.errors.LockNotOwnedError` (a :class:`RuntimeError` as in
    :mod:`threading`, and the standard library's :class:`AssertionError`) unless the
    calling thread holds the lock.  If the lock's holder process dies, what is waiting on
    the lock raises :class:`~procly.errors.OwnerDiedError` (see :class:`Lock`).
    """

    def __init__(self, lock: Any = None, *, ctx: Any = None) -> None:
        if lock is None:
            lock = RLock(ctx=ctx)
        elif not isinstance(lock, OWNED_LOCK_TYPES):
            raise TypeError(f"Condition needs a procly Lock or RLock, not {type(lock).__name__}")
        self._lock: OwnedLock = lock  # either implementation: same interface
        self._sleeping = Semaphore(0, ctx=ctx)
        self._woken = Semaphore(0, ctx=ctx)
        self._wake = Semaphore(0, ctx=ctx)
        self._bind()

    def _bind(self) -> None:
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __getstate__(self) -> dict[str, Any]:
        return {
            "lock": self._lock,
            "sleeping": self._sleeping,
            "woken": self._woken,
            "wake": self._wake,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._lock = state["lock"]
        self._sleeping = state["sleeping"]
        self._woken = state["woken"]
        self._wake = state["wake"]
        self._bind()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def __repr__(self) -> str:
        try:
            waiters = self._sleeping.get_value() - self._woken.get_value()
        except Exception:  # pragma: no cover
            waiters = "unknown"  # type: ignore[assignment]
        return f"<{type(self).__name__}({self._lock!r}, {waiters})>"

    def _check_owned(self, what: str) -> None:
        if not self._lock._is_mine():
            raise LockNotOwnedError(f"cannot {what} on an un-acquired lock")

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, sleep until notified or *timeout* seconds passed, take the
        lock back (at the same recursion depth); ``False`` if the timeout ran out."""
        self._check_owned("wait")
        self._sleeping.release()
        depth = self._lock._release_save()
        try:
            return self._wake.acquire(True, timeout)
        finally:
            self._woken.release()
            self._lock._acquire_restore(depth)

    def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T | bool:
        """Wait until *predicate()* is true or *timeout* ran out; return its last value."""
        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            if deadline is None:
                self.wait(None)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to *n* of the processes/threads waiting now."""
        self._check_owned("notify")
        # Invariant on entry: no wake token is pending (the last notify cleared them).
        # Each acknowledgement present now comes from a waiter that timed out on its own:
        # it is no longer sleeping.
        while self._woken.acquire(False):
            self._sleeping.acquire(False)
        woken = 0
        while woken < n and self._sleeping.acquire(False):
            self._wake.release()
            woken += 1
        if woken:
            for _ in range(woken):
                self._woken.acquire()
            # Tokens left here were meant for waiters that timed out meanwhile.
            while self._wake.acquire(False):
                pass

    def notify_all(self) -> None:
        """Wake every process/thread waiting now."""
        self.notify(sys.maxsize)

    notifyAll = notify_all
