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

The module-level functions (``procly.Lock()``, ``procly.Queue()``, ...) are plain functions in
:mod:`procly._default` bound to the default context, as in the standard library; this module
only re-exports.
"""

from __future__ import annotations

from . import context as context  # the drop-in submodules the stdlib package also loads
from . import process as process
from . import util as util
from ._contexts import Process as Process
from ._default import Array as Array
from ._default import Barrier as Barrier
from ._default import BoundedSemaphore as BoundedSemaphore
from ._default import Condition as Condition
from ._default import Event as Event
from ._default import JoinableQueue as JoinableQueue
from ._default import Lock as Lock
from ._default import Manager as Manager
from ._default import Pipe as Pipe
from ._default import Pool as Pool
from ._default import Queue as Queue
from ._default import RawArray as RawArray
from ._default import RawValue as RawValue
from ._default import RLock as RLock
from ._default import Semaphore as Semaphore
from ._default import SimpleQueue as SimpleQueue
from ._default import Value as Value
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
from ._errors import AuthenticationError as AuthenticationError
from ._errors import BufferTooShort as BufferTooShort
from ._errors import ProcessError as ProcessError
from ._errors import TaskTimeoutError as TaskTimeoutError
from ._errors import TimeoutError as TimeoutError

TYPE_CHECKING = False  # not typing's: a spawned child imports this module, typing costs ~3 ms
if TYPE_CHECKING:
    from . import connection as connection
    from . import reduction as reducer
    from . import reduction as reduction
    from ._executor._executor import ProcessPoolExecutor as ProcessPoolExecutor
    from ._futures_errors import WorkerCrashedError as WorkerCrashedError

# Loaded on first access, so that ``import procly`` (which every spawned child pays for) stays
# cheap: connections pull in socket, hmac and secrets; the executor and WorkerCrashedError
# pull in concurrent.futures.
_LAZY = {
    "connection": ("procly.connection", None),
    "reduction": ("procly.reduction", None),
    "reducer": ("procly.reduction", None),
    "ProcessPoolExecutor": ("procly._executor._executor", "ProcessPoolExecutor"),
    "WorkerCrashedError": ("procly._futures_errors", "WorkerCrashedError"),
}


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'procly' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


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
