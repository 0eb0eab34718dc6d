"""Lock and RLock shared by processes: which implementation this process uses (layer 2).

Two implementations with one contract (see :mod:`._purelock` for the semantics, owner-death
detection included):

* :mod:`._fastlock` -- a futex word in a shared slot, driven by the C extension
  :mod:`procly._os._native` (Linux).  Uncontended ``acquire``/``release`` are single atomic
  instructions inside C methods.
* :mod:`._purelock` -- a named POSIX semaphore plus an owner word, in Python.

The C one is used when the extension imports; ``PROCLY_PURE=1`` in the environment forces
the pure one (tests run both).  The choice is made once, at import, so every lock of a
process is of one kind; a child inherits the environment and so makes the same choice, and
a lock crossing to a child unpickles as the kind it was in any case (each pickles through
its own module's rebuild function).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import _fastlock, _purelock
from ._lockbase import CHECK_INTERVAL

__all__ = ("CHECK_INTERVAL", "NATIVE", "OWNED_LOCK_TYPES", "Lock", "RLock")

#: Whether this process uses the C implementation.
NATIVE: bool = _fastlock.AVAILABLE and os.environ.get("PROCLY_PURE", "") in ("", "0")

if TYPE_CHECKING:  # both implementations have the pure one's interface
    from ._purelock import Lock as Lock
    from ._purelock import RLock as RLock

    OWNED_LOCK_TYPES: tuple[type, ...]
elif NATIVE:
    from ._fastlock import Lock, RLock
else:
    from ._purelock import Lock, RLock

#: What :class:`Condition` accepts as its lock: either implementation.
OWNED_LOCK_TYPES = (
    (_purelock.OwnedLock, _fastlock.OwnedLock) if _fastlock.AVAILABLE else (_purelock.OwnedLock,)
)
