"""A critical section that garbage-collector finalizers may interrupt without deadlocking.

Several module-level registries (the tracker client, the shared-ctypes heap, the sync slot
registry) are changed both by ordinary calls and by ``weakref.finalize`` callbacks.  A
garbage collection can run a finalizer on *any* thread at *any* allocation, including on a
thread that is inside the registry's critical section.  With a plain ``threading.Lock`` the
finalizer then waits for a lock its own thread holds: a deadlock.  Remembering the holding
thread's id after ``acquire()`` is not enough either, because a collection can run between
the ``acquire()`` and the store of the id (that race hung a CI-style run).

:class:`Section` closes the gap with a re-entrant lock and an "inside" flag set only once
the lock is held:

* another thread waits for the section, as with any lock;
* a finalizer on the thread that is inside gets ``False`` from :meth:`Section.enter` and
  defers its work (the callers append to a deque, whose appends are atomic, and drain it
  the next time they are inside);
* a finalizer that runs on the holding thread *before* the flag is set, or after it is
  cleared, re-enters the lock and does its work at once -- safe, because the interrupted
  caller has not started, or has finished, changing the shared state.
"""

from __future__ import annotations

import threading

__all__ = ("Section",)


class Section:
    """See the module docstring.  Not picklable; make a new one after ``fork``."""

    __slots__ = ("_inside", "_lock")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._inside = False

    def enter(self) -> bool:
        """Wait for the section and enter it; ``False`` (without entering) when this
        thread is already inside, i.e. when called from a finalizer that interrupted it."""
        self._lock.acquire()
        if self._inside:
            self._lock.release()
            return False
        self._inside = True
        return True

    def leave(self) -> None:
        self._inside = False
        self._lock.release()

    @property
    def inside(self) -> bool:
        """Whether some thread is inside (for tests and assertions)."""
        return self._inside

    def __enter__(self) -> Section:
        """For calls that finalizers never make: re-entering is a bug, not a deferral."""
        if not self.enter():
            raise RuntimeError("critical section re-entered on the same thread")
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()
