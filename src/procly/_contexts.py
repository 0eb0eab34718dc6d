"""Public context objects: what ``procly.get_context(...)`` returns.

A context binds one start method (layer 1, :mod:`procly._proc._context`) to the factories
of every layer above it (locks, shared memory, queues, pools, managers).  It lives at the
top of the package, beside the façade, because it is the one place that may know every
layer; each factory imports its layer on first use so that ``import procly`` (which a
spawned child pays for) stays cheap.

Sections are owned by the part of procly that provides them; keep additions inside your
section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _errors

if TYPE_CHECKING:
    pass


class BaseContext:
    """Everything ``procly`` offers at module level, bound to one start method."""

    ProcessError = _errors.ProcessError
    BufferTooShort = _errors.BufferTooShort
    TimeoutError = _errors.TimeoutError
    AuthenticationError = _errors.AuthenticationError

    # -- processes and start methods (owner: processes) ------------------------------------

    # -- connections (owner: connections) --------------------------------------------------
    def Pipe(self, duplex: bool = True) -> Any:
        """Return a pair ``(conn1, conn2)`` of :class:`~procly.connection.Connection` objects."""
        from ._proc._connection import Pipe

        return Pipe(duplex)

    # -- synchronization (owner: sync) -----------------------------------------------------

    # -- shared memory and shared ctypes (owner: shm) --------------------------------------

    # -- queues (owner: queues) ------------------------------------------------------------
