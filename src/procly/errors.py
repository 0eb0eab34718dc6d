"""Every exception procly raises, in one public place (see :mod:`procly._errors` for the rules)."""

from __future__ import annotations

from ._errors import AuthenticationError as AuthenticationError
from ._errors import BackendError as BackendError
from ._errors import BufferTooShort as BufferTooShort
from ._errors import ContextAlreadySetError as ContextAlreadySetError
from ._errors import FrameError as FrameError
from ._errors import LockNotOwnedError as LockNotOwnedError
from ._errors import OwnerDiedError as OwnerDiedError
from ._errors import PoolClosedError as PoolClosedError
from ._errors import ProcessError as ProcessError
from ._errors import RemoteTraceback as RemoteTraceback
from ._errors import ResourceLeakWarning as ResourceLeakWarning
from ._errors import SerializationError as SerializationError
from ._errors import StartMethodError as StartMethodError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import TimeoutError as TimeoutError
from ._errors import WorkerError as WorkerError
from ._futures_errors import BrokenProcessPool as BrokenProcessPool
from ._futures_errors import WorkerCrashedError as WorkerCrashedError
from ._futures_errors import _rebuild_worker_crashed as _rebuild_worker_crashed

__all__ = (
    "AuthenticationError",
    "BackendError",
    "BrokenProcessPool",
    "BufferTooShort",
    "ContextAlreadySetError",
    "FrameError",
    "LockNotOwnedError",
    "OwnerDiedError",
    "PoolClosedError",
    "ProcessError",
    "RemoteTraceback",
    "ResourceLeakWarning",
    "SerializationError",
    "StartMethodError",
    "TaskTimeoutError",
    "TimeoutError",
    "WorkerCrashedError",
    "WorkerError",
)
