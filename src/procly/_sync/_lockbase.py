"""What the two Lock/RLock implementations share (layer 2): the check interval, the
Condition protocol's re-acquire, and the standard library's ``repr`` formats.

:mod:`._purelock` (named semaphores, any POSIX) and :mod:`._fastlock` (a futex word, the
C extension :mod:`procly._os._native`) both mix in :class:`OwnedLockMixin`; :mod:`._lock`
picks one of them at import.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._errors import OwnerDiedError
from ._owner import IDENTITY

__all__ = ("CHECK_INTERVAL", "OwnedLockMixin")

#: Seconds a blocked acquirer sleeps between two checks that the holder is alive.
CHECK_INTERVAL = 0.1


def _process_name() -> str:
    try:
        from .._proc._process import current_process

        return str(current_process().name)
    except Exception:  # pragma: no cover - processes layer unavailable
        return "MainProcess"


class OwnedLockMixin:
    """Methods written once for both implementations.

    The implementation provides ``acquire``, ``_is_mine``, ``_count`` and
    :meth:`_holder_pid` (0 when free).  Keep ``acquire``/``release``/``__enter__``/
    ``__exit__`` out of here: the C implementation's must be found first.
    """

    _count: int

    if TYPE_CHECKING:  # provided by each implementation (declared here for mypy only)

        def acquire(self, block: bool = True, timeout: float | None = None) -> bool: ...

        def _is_mine(self) -> bool: ...

        def _holder_pid(self) -> int: ...

    def _acquire_restore(self, count: int) -> None:
        """Take the lock back after ``_release_save`` (for :meth:`Condition.wait`).

        If the lock was abandoned meanwhile, take it anyway and then raise
        :class:`OwnerDiedError`: the caller (inside ``with condition:``) holds the lock, as
        its ``__exit__`` expects.
        """
        died: OwnerDiedError | None = None
        while True:
            try:
                self.acquire()
                break
            except OwnerDiedError as exc:
                died = died or exc
        self._count = count
        if died is not None:
            raise died

    def _holder_text(self) -> str:
        """Who holds the lock, in the standard library's words."""
        if self._is_mine():
            name = _process_name()
            thread = threading.current_thread().name
            return name if thread == "MainThread" else f"{name}|{thread}"
        pid = self._holder_pid()
        if pid == 0:
            return "None"
        if pid == IDENTITY.pid:
            return "SomeOtherThread"
        return "SomeOtherProcess"

    def _lock_repr(self) -> str:
        try:
            holder = self._holder_text()
        except Exception:  # pragma: no cover
            holder = "unknown"
        return f"<{type(self).__name__}(owner={holder})>"

    def _rlock_repr(self) -> str:
        count: Any
        try:
            holder = self._holder_text()
            if holder == "None":
                count = 0
            elif holder in ("SomeOtherThread", "SomeOtherProcess"):
                count = "nonzero"
            else:
                count = self._count
        except Exception:  # pragma: no cover
            holder, count = "unknown", "unknown"
        return f"<{type(self).__name__}({holder}, {count})>"
