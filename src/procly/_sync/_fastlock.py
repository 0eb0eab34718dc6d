"""Lock and RLock on a futex word in a shared slot, through the C extension (layer 2).

The lock word, the holder's token and the repair counter live in one slot of a shared
arena (:mod:`._arena`); the C type :class:`procly._os._native.SharedLock` does the rest --
its header comment explains the word layout, the memory ordering and the owner-death
protocol.  ``acquire``, ``release``, ``__enter__`` and ``__exit__`` are the C methods
themselves (this module only subclasses the type), so the uncontended path is one
compare-and-swap with no Python frame, no system call and the GIL kept.

Semantics are those of :mod:`._purelock` (the fallback): :class:`OwnerDiedError` raised
once by the acquirer that found the holder dead (within about
:data:`~._lockbase.CHECK_INTERVAL` seconds), lock left free; ``ValueError`` on releasing an
unlocked :class:`Lock`; :class:`LockNotOwnedError` on releasing an :class:`RLock` owned by
another thread.  Nothing is named, so nothing can leak: the slot's memory goes with its
arena.  Pickling follows the other primitives: only while spawning a child, and not for a
lock made by a ``fork`` context (kept identical to the pure path, whose semaphore has no
name left there).

:data:`AVAILABLE` is false when the extension is not built (other OS, no compiler); then
this module defines no classes.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from .._errors import LockNotOwnedError, OwnerDiedError
from . import _arena
from ._lockbase import CHECK_INTERVAL, OwnedLockMixin
from ._owner import IDENTITY, is_alive
from ._semlock import _unlink_now

__all__ = ("AVAILABLE",)

try:
    from .._os import _native
except ImportError:  # not built here: the pure implementation is used
    AVAILABLE = False
else:
    AVAILABLE = True


def _sync_identity() -> None:
    """Hand this process's token to C (at import, and in every forked child after
    :meth:`Identity.refresh`: C itself knows only the bare pid until then)."""
    _native.set_identity(IDENTITY.pid, IDENTITY.token)


if AVAILABLE or TYPE_CHECKING:
    _native.configure(
        owner_died=OwnerDiedError,
        not_owned=LockNotOwnedError,
        is_alive=is_alive,
        check_interval=CHECK_INTERVAL,
    )
    _sync_identity()
    try:  # registered after _owner's refresh hook, so it runs after it
        from .._proc._afterfork import register_internal

        register_internal(_sync_identity)
    except ImportError:  # pragma: no cover - the processes layer always provides it
        import os

        os.register_at_fork(after_in_child=_sync_identity)

    class OwnedLock(OwnedLockMixin, _native.SharedLock):
        """What Lock and RLock share: the slot, pickling, and the hooks for Condition."""

        _recursive = False
        _slot: _arena.Slot
        _fork_only: bool

        def __init__(self, *, ctx: Any = None) -> None:
            slot = _arena.REGISTRY.allocate()
            self._attach(slot, fork_only=_unlink_now(ctx))
            weakref.finalize(self, _arena.REGISTRY.release, slot)

        def _attach(self, slot: _arena.Slot, fork_only: bool) -> None:
            self._slot = slot
            self._fork_only = fork_only
            _native.SharedLock.__init__(self, slot.arena.map, slot.offset, self._recursive)

        def __reduce__(self) -> tuple[Any, ...]:
            from .._proc._spawning import assert_spawning

            assert_spawning(self)
            if self._fork_only:
                raise RuntimeError(
                    f"{type(self).__name__} was created by a 'fork' context: it can only be "
                    "inherited through fork. Create it with get_context('spawn') or "
                    "get_context('forkserver') to pass it to such a child"
                )
            return (_rebuild, (self._recursive, self._slot))

        def _holder_pid(self) -> int:
            return self._holder()[0]

    class Lock(OwnedLock):
        """A non-recursive lock shared by processes (:class:`multiprocessing.Lock`).

        Any thread or process may release it.  Beyond the standard library: when the
        holding process dies, a waiter raises :class:`~procly.errors.OwnerDiedError` within
        about :data:`CHECK_INTERVAL` seconds and the lock becomes free again.

        ``acquire(block=True, timeout=None)`` returns ``False`` if *block* is false or
        *timeout* ran out; raises :class:`TypeError` for a timeout that is not a number.
        ``release()`` raises :class:`ValueError` when the lock is not locked.
        """

        def __repr__(self) -> str:
            return self._lock_repr()

    class RLock(OwnedLock):
        """A recursive lock shared by processes (:class:`multiprocessing.RLock`).

        It is owned by one thread of one process, which may acquire it again; it is free
        once released as many times.  Beyond the standard library: when the holding
        process dies, a waiter raises :class:`~procly.errors.OwnerDiedError` and the lock
        becomes free again.  ``release()`` raises :class:`~procly.errors.LockNotOwnedError`
        (an :class:`AssertionError` and a :class:`RuntimeError`) when the calling thread
        does not own it.
        """

        _recursive = True

        def __repr__(self) -> str:
            return self._rlock_repr()

    def _rebuild(recursive: bool, slot: _arena.Slot) -> OwnedLock:
        cls: type[OwnedLock] = RLock if recursive else Lock
        lock = cls.__new__(cls)
        lock._attach(slot, fork_only=False)
        return lock
