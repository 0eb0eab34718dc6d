"""The whole exception hierarchy of procly (layer 0: imports the standard library only).

The two errors that subclass :class:`concurrent.futures.BrokenExecutor`
(:class:`BrokenProcessPool`, :class:`WorkerCrashedError`) live in
:mod:`procly._futures_errors`: importing :mod:`concurrent.futures` costs about 12 ms
(logging, traceback), which every spawned child would pay if this module imported it.
Importing them from here still works (module ``__getattr__``) but loads them.

Rule: every standard-library name is kept, and every new error also subclasses the
builtin that :mod:`multiprocessing` raised in the same situation, so that existing
``except`` clauses written for the standard library keep matching.

``TimeoutError`` subclasses both :class:`ProcessError` and :class:`builtins.TimeoutError`
(which is what :class:`concurrent.futures.TimeoutError` is since Python 3.11).  A side
effect worth knowing: it is therefore also an :class:`OSError`.
"""

from __future__ import annotations

import builtins
import pickle

__all__ = (
    "AuthenticationError",
    "BackendError",
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
    "WorkerError",
)


class ProcessError(Exception):
    """Base class of every error procly raises about processes (standard-library name)."""


class BufferTooShort(ProcessError):
    """Raised by :meth:`Connection.recv_bytes_into` when the buffer is smaller than the message.

    ``args[0]`` holds the whole message as :class:`bytes`, as in the standard library, so
    nothing is lost.
    """


class AuthenticationError(ProcessError):
    """Raised by :class:`~procly.connection.Listener` / :func:`~procly.connection.Client`
    when the HMAC challenge-response on ``authkey`` fails. Nothing was unpickled."""


class FrameError(ProcessError, EOFError):
    """Raised by a :class:`~procly.connection.Connection` when a frame is corrupt, truncated
    or declares a length beyond the sane bound.

    It subclasses :class:`EOFError` because the stream cannot be resynchronised: the
    connection is unusable afterwards, exactly as if the peer had gone away.
    """


class TimeoutError(ProcessError, builtins.TimeoutError):
    """Raised when an operation with a ``timeout`` did not finish in time (standard-library name).

    Also caught by ``except TimeoutError`` and ``except concurrent.futures.TimeoutError``.
    """


class TaskTimeoutError(TimeoutError):
    """Raised for one task that exceeded its per-task timeout; its worker was killed and
    replaced, every other task carries on."""


class StartMethodError(ProcessError, ValueError):
    """Raised by :func:`get_context` / :func:`set_start_method` for an unknown or unavailable
    start method (the standard library raised :class:`ValueError`)."""


class ContextAlreadySetError(ProcessError, RuntimeError):
    """Raised by :func:`set_start_method` when the start method is already fixed and
    ``force`` is false (the standard library raised :class:`RuntimeError`)."""


class SerializationError(ProcessError, pickle.PicklingError):
    """Raised in the sending process when an object cannot be serialized.

    The message names the offending object, its type and where it sits inside the object
    that was sent; nothing was sent. Subclasses :class:`pickle.PicklingError`, which is what
    the standard library let escape.
    """


class PoolClosedError(ProcessError, ValueError):
    """Raised when a closed or terminated pool is used (the standard library raised
    ``ValueError("Pool not running")``)."""


class WorkerError(ProcessError):
    """Base class of failures of a worker process itself, as opposed to the user's code."""


class BackendError(ProcessError):
    """Raised when a distributed backend is unavailable or misconfigured."""


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` to an exception re-raised from another process; its text is
    the traceback as formatted over there."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class OwnerDiedError(ProcessError, RuntimeError):
    """Raised by ``Lock.acquire`` / ``RLock.acquire`` (and what waits on them: ``Condition``,
    ``Event``, ``Barrier``) when the process that held the lock died without releasing it.

    The lock has been reset to *unlocked* before this is raised, so every other waiter (and
    a retry) acquires it normally; exactly one acquirer sees this error per abandoned hold.
    The data the lock protected may be half-updated.  ``pid`` is the dead holder.
    (The standard library blocks for ever in this situation.)
    """

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_owner_died, (str(self), self.pid))


def _rebuild_owner_died(message: str, pid: int | None) -> OwnerDiedError:
    return OwnerDiedError(message, pid=pid)


class LockNotOwnedError(ProcessError, RuntimeError, AssertionError):
    """Raised by ``RLock.release`` and ``Condition.wait``/``notify`` when the calling thread
    does not hold the lock.

    The standard library raised :class:`AssertionError` here and :mod:`threading` raises
    :class:`RuntimeError`; this subclasses both so either ``except`` clause keeps matching.
    """


class ResourceLeakWarning(ResourceWarning):
    """Emitted when procly had to reclaim a semaphore or shared-memory segment that a dead
    process left behind."""


TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs a spawned child ~7 ms
if TYPE_CHECKING:
    from typing import Any

_IN_FUTURES_ERRORS = frozenset({"BrokenProcessPool", "WorkerCrashedError"})


def __getattr__(name: str) -> Any:
    if name in _IN_FUTURES_ERRORS:
        from . import _futures_errors

        return getattr(_futures_errors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _publish() -> None:
    """Give every class its public home: pickle records ``__module__`` for the receiver."""
    for name in __all__:
        globals()[name].__module__ = "procly.errors"


_publish()
