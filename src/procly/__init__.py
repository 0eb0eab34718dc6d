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
# isort: split
from . import context as context  # the drop-in submodules, loaded as the stdlib loads them
from . import process as process
from . import util as util
from ._contexts import Process as Process
from ._default import active_children as active_children
from ._default import allow_connection_pickling as allow_connection_pickling
from ._default import cpu_count as cpu_count
from ._default import current_process as current_process
from ._default import freeze_support as freeze_support
from ._default import get_all_start_methods as get_all_start_methods
from ._default import get_context as get_context
from ._default import get_logger as get_logger
from ._default import get_start_method as get_start_method
from ._default import log_to_stderr as log_to_stderr
from ._default import parent_process as parent_process
from ._default import set_executable as set_executable
from ._default import set_forkserver_preload as set_forkserver_preload
from ._default import set_start_method as set_start_method
from ._default import usable_cpu_count as usable_cpu_count

# -- connections (owner: connections) ------------------------------------------------------
# isort: split
# Connections pull in socket, hmac and secrets (~17 ms that every spawned child would pay):
# ``Pipe`` imports them on first call, ``procly.connection``/``reducer`` on first access.
from ._default import Pipe as Pipe

# -- synchronization (owner: sync) ---------------------------------------------------------
# isort: split
from typing import Any as _SyncAny

from . import _contexts as _sync_contexts


def Lock() -> _SyncAny:
    """A non-recursive lock shared by processes (default context)."""
    return _sync_contexts.default_context.Lock()


def RLock() -> _SyncAny:
    """A recursive lock shared by processes (default context)."""
    return _sync_contexts.default_context.RLock()


def Semaphore(value: int = 1) -> _SyncAny:
    """A counting semaphore shared by processes (default context)."""
    return _sync_contexts.default_context.Semaphore(value)


def BoundedSemaphore(value: int = 1) -> _SyncAny:
    """A bounded semaphore shared by processes (default context)."""
    return _sync_contexts.default_context.BoundedSemaphore(value)


def Condition(lock: _SyncAny = None) -> _SyncAny:
    """A condition variable shared by processes (default context)."""
    return _sync_contexts.default_context.Condition(lock)


def Event() -> _SyncAny:
    """An event shared by processes (default context)."""
    return _sync_contexts.default_context.Event()


def Barrier(parties: int, action: _SyncAny = None, timeout: float | None = None) -> _SyncAny:
    """A barrier shared by processes (default context)."""
    return _sync_contexts.default_context.Barrier(parties, action, timeout)


# -- shared memory and shared ctypes (owner: shm) ------------------------------------------
# isort: split
from typing import Any as _Any  # noqa: E402

from . import _contexts as _shm_contexts  # noqa: E402


def RawValue(typecode_or_type: _Any, *args: _Any) -> _Any:
    """A ctypes object in shared memory, without a lock (default context)."""
    return _shm_contexts.default_context.RawValue(typecode_or_type, *args)


def RawArray(typecode_or_type: _Any, size_or_initializer: _Any) -> _Any:
    """A ctypes array in shared memory, without a lock (default context)."""
    return _shm_contexts.default_context.RawArray(typecode_or_type, size_or_initializer)


def Value(typecode_or_type: _Any, *args: _Any, lock: _Any = True) -> _Any:
    """A shared ctypes object guarded by a recursive lock (default context)."""
    return _shm_contexts.default_context.Value(typecode_or_type, *args, lock=lock)


def Array(typecode_or_type: _Any, size_or_initializer: _Any, *, lock: _Any = True) -> _Any:
    """A shared ctypes array guarded by a recursive lock (default context)."""
    return _shm_contexts.default_context.Array(typecode_or_type, size_or_initializer, lock=lock)


# -- queues (owner: queues) ----------------------------------------------------------------
# isort: split
from typing import Any as _QAny  # noqa: E402

from . import _contexts as _queue_contexts  # noqa: E402


def Queue(maxsize: int = 0) -> _QAny:
    """A process-shared FIFO queue (default context)."""
    return _queue_contexts.default_context.Queue(maxsize)


def JoinableQueue(maxsize: int = 0) -> _QAny:
    """A process-shared queue with ``task_done``/``join`` (default context)."""
    return _queue_contexts.default_context.JoinableQueue(maxsize)


def SimpleQueue() -> _QAny:
    """A simplified process-shared queue (default context)."""
    return _queue_contexts.default_context.SimpleQueue()


# -- pools (owner: pool) -------------------------------------------------------------------
# isort: split
from typing import Any as _PAny  # noqa: E402

from . import _contexts as _pool_contexts  # noqa: E402
from ._errors import TaskTimeoutError as TaskTimeoutError  # noqa: E402


def Pool(
    processes: int | None = None,
    initializer: _PAny = None,
    initargs: _PAny = (),
    maxtasksperchild: int | None = None,
    **extras: _PAny,
) -> _PAny:
    """A process pool, :class:`procly.pool.Pool` (default context)."""
    return _pool_contexts.default_context.Pool(
        processes, initializer, initargs, maxtasksperchild, **extras
    )


# -- managers (owner: managers) ------------------------------------------------------------
# isort: split
from typing import Any as _MAny  # noqa: E402

from . import _contexts as _manager_contexts  # noqa: E402


def Manager() -> _MAny:
    """A started :class:`procly.managers.SyncManager` (default context)."""
    return _manager_contexts.default_context.Manager()


def __getattr__(name: str) -> _PAny:
    # The engine is imported on first use only, so that ``import procly`` (which every
    # spawned child pays for) stays cheap.
    if name == "ProcessPoolExecutor":
        from ._executor._executor import ProcessPoolExecutor

        return ProcessPoolExecutor
    if name in ("connection", "reduction", "reducer"):
        import importlib

        return importlib.import_module("procly.reduction" if name == "reducer" else f"procly.{name}")
    if name == "WorkerCrashedError":  # it subclasses concurrent.futures.BrokenExecutor
        from ._futures_errors import WorkerCrashedError

        return WorkerCrashedError
    raise AttributeError(f"module 'procly' has no attribute {name!r}")


__all__ = (  # noqa: RUF022 - grouped by owner, each group sorted
    "AuthenticationError",
    "BufferTooShort",
    "ProcessError",
    "TimeoutError",
    # processes and start methods
    "Process",
    "active_children",
    "allow_connection_pickling",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "log_to_stderr",
    "parent_process",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
    "usable_cpu_count",
    # connections
    "Pipe",
    "reducer",
    # synchronization
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Lock",
    "RLock",
    "Semaphore",
    # shared memory and shared ctypes
    "Array",
    "RawArray",
    "RawValue",
    "Value",
    # queues
    "JoinableQueue",
    "Queue",
    "SimpleQueue",
    # pools
    "Pool",
    "ProcessPoolExecutor",
    "TaskTimeoutError",
    "WorkerCrashedError",
    # managers
    "Manager",
)
