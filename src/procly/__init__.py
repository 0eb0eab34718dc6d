"""procly: Python's :mod:`multiprocessing`, reimplemented from scratch.

``import procly as multiprocessing`` runs code written for the standard library unchanged;
the Python documentation of :mod:`multiprocessing` is the spec.  Linux first, macOS kept
possible, Windows out of scope.

General layout (a module imports only its own layer or lower; higher layers reach lower ones
through registries, never the other way round)::

    L0  _errors, _typing, _os/ (OS plumbing), _serial/ (pickling, framing, fd passing)
    L1  _proc/     processes, start methods, connections, finalizers, resource tracker
    L2  _sync/ _shm/ _queues/   locks & co., shared memory & ctypes, queues
    L3  _engine/ _pool/ _executor/ _managers/
    L4  _observe/ _backends/
    L5  _bench/, __main__
    top _contexts (contexts binding a start method to every factory) and the public façades
        (this module, context.py, connection.py, synchronize.py, shared_memory.py, ...),
        which only re-export.

The module-level functions below are bound to the default context, as in the standard
library.  Each section is owned by the part of procly that provides it.
"""

from __future__ import annotations

from ._errors import AuthenticationError as AuthenticationError
from ._errors import BufferTooShort as BufferTooShort
from ._errors import ProcessError as ProcessError
from ._errors import TimeoutError as TimeoutError

# -- processes and start methods (owner: processes) ----------------------------------------

# -- connections (owner: connections) ------------------------------------------------------

# -- synchronization (owner: sync) ---------------------------------------------------------

# -- shared memory and shared ctypes (owner: shm) ------------------------------------------

# -- queues (owner: queues) ----------------------------------------------------------------

__all__ = (
    "AuthenticationError",
    "BufferTooShort",
    "ProcessError",
    "TimeoutError",
    # processes and start methods
    # connections
    # synchronization
    # shared memory and shared ctypes
    # queues
)
