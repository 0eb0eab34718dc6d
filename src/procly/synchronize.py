"""Synchronization primitives shared by processes: the public home of the classes
(drop-in for :mod:`multiprocessing.synchronize`).

Beyond the standard library, :class:`Lock` and :class:`RLock` notice when the process
holding them dies: a waiter raises :class:`~procly.errors.OwnerDiedError` once and the lock
is free again, instead of every waiter blocking for ever.
"""

from __future__ import annotations

from threading import BrokenBarrierError as BrokenBarrierError

from ._errors import LockNotOwnedError as LockNotOwnedError
from ._errors import OwnerDiedError as OwnerDiedError
from ._sync._barrier import Barrier as Barrier
from ._sync._condition import Condition as Condition
from ._sync._event import Event as Event
from ._sync._lock import Lock as Lock
from ._sync._lock import RLock as RLock
from ._sync._semlock import SEM_VALUE_MAX as SEM_VALUE_MAX
from ._sync._semlock import BoundedSemaphore as BoundedSemaphore
from ._sync._semlock import Semaphore as Semaphore
from ._sync._semlock import SemLock as SemLock

# OwnerDiedError and LockNotOwnedError are importable from here too; they join __all__ once
# procly.errors (their public home, recorded by pickle) re-exports them.
__all__ = (
    "SEM_VALUE_MAX",
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "SemLock",
    "Semaphore",
)

for _cls in (Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, SemLock, Semaphore):
    _cls.__module__ = __name__
del _cls
