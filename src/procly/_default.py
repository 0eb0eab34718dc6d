"""procly's module-level functions, bound to the default context (``procly.get_context()``
and friends).  Plain functions rather than ``globals().update``: they are visible to type
checkers and to ``help()``; :mod:`procly` re-exports them.
"""

from __future__ import annotations

from . import _contexts

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms

if TYPE_CHECKING:
    import logging
    from typing import Any

    from ._contexts import BaseContext
    from ._proc._connection import Connection
    from .process import BaseProcess


def current_process() -> BaseProcess:
    """The process object of the calling process."""
    return _contexts.default_context.current_process()


def parent_process() -> BaseProcess | None:
    """The parent's process object in a child started by procly, else ``None``."""
    return _contexts.default_context.parent_process()


def active_children() -> list[BaseProcess]:
    """Children of this process that are still alive (finished ones are reaped)."""
    return _contexts.default_context.active_children()


def cpu_count() -> int:
    """The number of CPUs in the machine (see :func:`usable_cpu_count` for pool sizing)."""
    return _contexts.default_context.cpu_count()


def usable_cpu_count() -> int:
    """The CPUs this process may use: affinity mask and cgroup CPU quota included."""
    return _contexts.default_context.usable_cpu_count()


def freeze_support() -> None:
    """No-op (frozen Windows executables are out of scope)."""
    _contexts.default_context.freeze_support()


def get_context(method: str | None = None) -> BaseContext:
    """The context of *method*, or of the chosen start method; raises
    :class:`StartMethodError` (a :class:`ValueError`) for an unknown one."""
    return _contexts.default_context.get_context(method)


def get_start_method(allow_none: bool = False) -> str | None:
    """The chosen start method (fixing the default unless *allow_none*)."""
    return _contexts.default_context.get_start_method(allow_none)


def set_start_method(method: str | None, force: bool = False) -> None:
    """Fix the start method; raises :class:`ContextAlreadySetError` (a
    :class:`RuntimeError`) if already fixed and not *force*."""
    _contexts.default_context.set_start_method(method, force)


def get_all_start_methods() -> list[str]:
    """The available start methods, the default first."""
    return _contexts.default_context.get_all_start_methods()


def set_executable(executable: str) -> None:
    """The interpreter spawned children and the forkserver run."""
    _contexts.default_context.set_executable(executable)


def set_forkserver_preload(module_names: list[str]) -> None:
    """Modules the forkserver imports once for all its children."""
    _contexts.default_context.set_forkserver_preload(module_names)


def get_logger() -> logging.Logger:
    """procly's logger (no handlers until :func:`log_to_stderr`)."""
    logger: logging.Logger = _contexts.default_context.get_logger()
    return logger


def log_to_stderr(level: int | str | None = None) -> logging.Logger:
    """Print procly's log records to stderr; returns the logger."""
    logger: logging.Logger = _contexts.default_context.log_to_stderr(level)
    return logger


def allow_connection_pickling() -> None:
    """Kept for compatibility: connections always pickle within procly."""
    _contexts.default_context.allow_connection_pickling()


for _function in (
    active_children,
    allow_connection_pickling,
    cpu_count,
    current_process,
    freeze_support,
    get_all_start_methods,
    get_context,
    get_logger,
    get_start_method,
    log_to_stderr,
    parent_process,
    set_executable,
    set_forkserver_preload,
    set_start_method,
    usable_cpu_count,
):
    _function.__module__ = "procly"  # where users (and pickle) find them
del _function


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Return a pair of connected :class:`~procly.connection.Connection` objects; one-way
    (the first end receives, the second sends) unless *duplex*."""
    return _contexts.default_context.Pipe(duplex)  # type: ignore[no-any-return]


# -- synchronization -----------------------------------------------------------------------


def Lock() -> Any:
    """A non-recursive lock shared by processes (see :mod:`procly.synchronize`)."""
    return _contexts.default_context.Lock()


def RLock() -> Any:
    """A recursive lock shared by processes."""
    return _contexts.default_context.RLock()


def Semaphore(value: int = 1) -> Any:
    """A counting semaphore shared by processes."""
    return _contexts.default_context.Semaphore(value)


def BoundedSemaphore(value: int = 1) -> Any:
    """A semaphore that refuses to be released above its initial value."""
    return _contexts.default_context.BoundedSemaphore(value)


def Condition(lock: Any = None) -> Any:
    """A condition variable shared by processes."""
    return _contexts.default_context.Condition(lock)


def Event() -> Any:
    """An event shared by processes."""
    return _contexts.default_context.Event()


def Barrier(parties: int, action: Any = None, timeout: float | None = None) -> Any:
    """A barrier shared by processes."""
    return _contexts.default_context.Barrier(parties, action, timeout)


# -- shared memory and shared ctypes -------------------------------------------------------


def RawValue(typecode_or_type: Any, *args: Any) -> Any:
    """A ctypes object in shared memory, without a lock."""
    return _contexts.default_context.RawValue(typecode_or_type, *args)


def RawArray(typecode_or_type: Any, size_or_initializer: Any) -> Any:
    """A ctypes array in shared memory, without a lock."""
    return _contexts.default_context.RawArray(typecode_or_type, size_or_initializer)


def Value(typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
    """A shared ctypes object guarded by a recursive lock."""
    return _contexts.default_context.Value(typecode_or_type, *args, lock=lock)


def Array(typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
    """A shared ctypes array guarded by a recursive lock."""
    return _contexts.default_context.Array(typecode_or_type, size_or_initializer, lock=lock)


# -- queues --------------------------------------------------------------------------------


def Queue(maxsize: int = 0) -> Any:
    """A process-shared FIFO queue (see :mod:`procly.queues`)."""
    return _contexts.default_context.Queue(maxsize)


def JoinableQueue(maxsize: int = 0) -> Any:
    """A process-shared queue with ``task_done``/``join``."""
    return _contexts.default_context.JoinableQueue(maxsize)


def SimpleQueue() -> Any:
    """A simplified process-shared queue."""
    return _contexts.default_context.SimpleQueue()


# -- pools and managers --------------------------------------------------------------------


def Pool(
    processes: int | None = None,
    initializer: Any = None,
    initargs: Any = (),
    maxtasksperchild: int | None = None,
    **extras: Any,
) -> Any:
    """A process pool, :class:`procly.pool.Pool`; *extras* are procly's options
    (``task_timeout=``, ``retries=``, ...)."""
    return _contexts.default_context.Pool(processes, initializer, initargs, maxtasksperchild, **extras)


def Manager() -> Any:
    """A started :class:`procly.managers.SyncManager` (shut it down, or use ``with``)."""
    return _contexts.default_context.Manager()
