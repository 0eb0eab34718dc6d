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

from . import _errors
from ._proc import _context as _start
from ._proc import _process

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms

if TYPE_CHECKING:
    from typing import Any


class BaseContext:
    """Everything ``procly`` offers at module level, bound to one start method."""

    __module__ = "procly.context"

    ProcessError = _errors.ProcessError
    BufferTooShort = _errors.BufferTooShort
    TimeoutError = _errors.TimeoutError
    AuthenticationError = _errors.AuthenticationError

    # -- processes and start methods (owner: processes) ------------------------------------
    _name: str | None = None

    @property
    def Process(self) -> type[_process.BaseProcess]:
        """The process class whose ``start()`` uses this context's start method."""
        return _PROCESS_CLASSES[self._name]

    def current_process(self) -> _process.BaseProcess:
        """The process object of the calling process."""
        return _process.current_process()

    def parent_process(self) -> _process.BaseProcess | None:
        """The parent's process object in a child started by procly, else ``None``."""
        return _process.parent_process()

    def active_children(self) -> list[_process.BaseProcess]:
        """Children of this process that are still alive (finished ones are reaped)."""
        return _process.active_children()

    def cpu_count(self) -> int:
        """The number of CPUs in the machine; raises :class:`NotImplementedError` if unknown."""
        from ._os._cpu import cpu_count

        return cpu_count()

    def usable_cpu_count(self) -> int:
        """The CPUs this process may use: affinity mask and cgroup quota included (procly)."""
        from ._os._cpu import usable_cpu_count

        return usable_cpu_count()

    def freeze_support(self) -> None:
        """Nothing to do: frozen Windows executables are out of procly's scope."""

    def get_logger(self) -> Any:
        """procly's logger (see :func:`procly.util.get_logger`)."""
        from ._proc._logger import get_logger

        return get_logger()

    def log_to_stderr(self, level: int | str | None = None) -> Any:
        """Print procly's log records to stderr (see :func:`procly.util.log_to_stderr`)."""
        from ._proc._logger import log_to_stderr

        return log_to_stderr(level)

    def allow_connection_pickling(self) -> None:
        """Connections always pickle within procly (descriptors travel as ``SCM_RIGHTS``);
        kept for compatibility: it makes sure their reducers are registered."""
        import importlib

        importlib.import_module("procly._proc._connection")

    def set_executable(self, executable: str) -> None:
        """Use *executable* as the interpreter of spawned children and the forkserver."""
        from ._proc._launch._spawn import LAUNCHER

        LAUNCHER.executable = str(executable)

    def set_forkserver_preload(self, module_names: list[str]) -> None:
        """Modules the forkserver imports once, so its children start with them loaded.

        Raises :class:`TypeError` unless *module_names* is a list of strings.
        """
        from ._proc._launch._forkserver import LAUNCHER

        LAUNCHER.set_preload(module_names)

    def get_context(self, method: str | None = None) -> BaseContext:
        """This context (``method=None``) or the context of start method *method*.

        Raises :class:`~procly.errors.StartMethodError` (a :class:`ValueError`) for an
        unknown method.
        """
        if method is None:
            return self
        return _CONTEXTS[_start.check_method(method)]

    def get_start_method(self, allow_none: bool = False) -> str | None:
        """The start method of this context."""
        return self._name

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Only the default context's start method can be set.

        Raises :class:`ValueError` on a concrete context, as the standard library does.
        """
        raise ValueError("cannot set start method of concrete context")

    def get_all_start_methods(self) -> list[str]:
        """The available start methods, the default first."""
        return _start.all_start_methods()

    def _check_available(self) -> None:
        """Every start method is available on Linux and macOS."""

    # -- connections (owner: connections) --------------------------------------------------
    def Pipe(self, duplex: bool = True) -> Any:
        """Return a pair ``(conn1, conn2)`` of :class:`~procly.connection.Connection` objects."""
        from ._proc._connection import Pipe

        return Pipe(duplex)

    @property
    def reducer(self) -> Any:
        """The module that pickles for procly: :mod:`procly.reduction` (stdlib name)."""
        from . import reduction

        return reduction

    # -- synchronization (owner: sync) -----------------------------------------------------
    def Lock(self) -> Any:
        """A non-recursive lock shared by processes (see :class:`procly.synchronize.Lock`)."""
        from .synchronize import Lock

        return Lock(ctx=self)

    def RLock(self) -> Any:
        """A recursive lock shared by processes (see :class:`procly.synchronize.RLock`)."""
        from .synchronize import RLock

        return RLock(ctx=self)

    def Semaphore(self, value: int = 1) -> Any:
        """A counting semaphore shared by processes."""
        from .synchronize import Semaphore

        return Semaphore(value, ctx=self)

    def BoundedSemaphore(self, value: int = 1) -> Any:
        """A semaphore that refuses to be released above *value*."""
        from .synchronize import BoundedSemaphore

        return BoundedSemaphore(value, ctx=self)

    def Condition(self, lock: Any = None) -> Any:
        """A condition variable shared by processes (over a new RLock unless *lock*)."""
        from .synchronize import Condition

        return Condition(lock, ctx=self)

    def Event(self) -> Any:
        """An event flag shared by processes."""
        from .synchronize import Event

        return Event(ctx=self)

    def Barrier(
        self, parties: int, action: Any = None, timeout: float | None = None
    ) -> Any:
        """A barrier for *parties* processes."""
        from .synchronize import Barrier

        return Barrier(parties, action, timeout, ctx=self)


    # -- shared memory and shared ctypes (owner: shm) --------------------------------------
    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:
        """A ctypes object in (anonymous, leak-proof) shared memory, without a lock."""
        from ._shm._ctypes import RawValue

        return RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:
        """A ctypes array in shared memory, without a lock."""
        from ._shm._ctypes import RawArray

        return RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
        """A shared ctypes object guarded by ``self.RLock()`` (or *lock*; ``False``: none).

        Raises :class:`AttributeError` if *lock* has no ``acquire`` method.
        """
        from ._shm._ctypes import Value

        return Value(typecode_or_type, *args, lock=lock, ctx=self)  # type: ignore[arg-type]

    def Array(self, typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
        """A shared ctypes array guarded by ``self.RLock()`` (or *lock*; ``False``: none)."""
        from ._shm._ctypes import Array

        return Array(typecode_or_type, size_or_initializer, lock=lock, ctx=self)  # type: ignore[arg-type]


    # -- queues (owner: queues) ------------------------------------------------------------
    def Queue(self, maxsize: int = 0) -> Any:
        """A process-shared FIFO queue (:class:`procly.queues.Queue`).

        Raises :class:`TypeError` for a non-int *maxsize*; ``maxsize <= 0`` is unbounded.
        """
        from ._queues._queue import Queue

        return Queue(maxsize, ctx=self)

    def JoinableQueue(self, maxsize: int = 0) -> Any:
        """A :class:`Queue` with ``task_done``/``join`` (:class:`procly.queues.JoinableQueue`)."""
        from ._queues._queue import JoinableQueue

        return JoinableQueue(maxsize, ctx=self)

    def SimpleQueue(self) -> Any:
        """An unbounded queue with only put/get/empty/close (:class:`procly.queues.SimpleQueue`)."""
        from ._queues._queue import SimpleQueue

        return SimpleQueue(ctx=self)

    # -- pools (owner: pool) ---------------------------------------------------------------
    def Pool(
        self,
        processes: int | None = None,
        initializer: Any = None,
        initargs: Any = (),
        maxtasksperchild: int | None = None,
        **extras: Any,
    ) -> Any:
        """A :class:`procly.pool.Pool` whose workers use this context's start method."""
        from ._pool._pool import Pool

        return Pool(processes, initializer, initargs, maxtasksperchild, context=self, **extras)

    # -- managers (owner: managers) --------------------------------------------------------
    def Manager(self) -> Any:
        """A started :class:`procly.managers.SyncManager` whose server process uses this
        context's start method (shut it down with ``shutdown()`` or a ``with`` block)."""
        from ._managers._sync_manager import SyncManager

        manager = SyncManager(ctx=self.get_context())
        manager.start()
        return manager


# == processes and start methods (owner: processes): one context per start method ==========


class Process(_process.BaseProcess):
    """A process started with the default context's start method, chosen at ``start()``
    (``procly.Process``)."""

    __module__ = "procly.context"

    @staticmethod
    def _Popen(process_obj: _process.BaseProcess) -> Any:
        method = _start.START_METHOD.get()
        assert method is not None
        process_obj._start_method = method
        return _start.get_launcher(method).start(process_obj)


class ForkProcess(_process.BaseProcess):
    """A process started by forking this one."""

    __module__ = "procly.context"
    _start_method = "fork"

    @staticmethod
    def _Popen(process_obj: _process.BaseProcess) -> Any:
        return _start.get_launcher("fork").start(process_obj)


class SpawnProcess(_process.BaseProcess):
    """A process started in a fresh interpreter."""

    __module__ = "procly.context"
    _start_method = "spawn"

    @staticmethod
    def _Popen(process_obj: _process.BaseProcess) -> Any:
        return _start.get_launcher("spawn").start(process_obj)


class ForkServerProcess(_process.BaseProcess):
    """A process forked by this process's forkserver."""

    __module__ = "procly.context"
    _start_method = "forkserver"

    @staticmethod
    def _Popen(process_obj: _process.BaseProcess) -> Any:
        return _start.get_launcher("forkserver").start(process_obj)


_PROCESS_CLASSES: dict[str | None, type[_process.BaseProcess]] = {
    None: Process,
    "fork": ForkProcess,
    "spawn": SpawnProcess,
    "forkserver": ForkServerProcess,
}


class ForkContext(BaseContext):
    """The context of the ``fork`` start method."""

    __module__ = "procly.context"
    _name = "fork"


class SpawnContext(BaseContext):
    """The context of the ``spawn`` start method."""

    __module__ = "procly.context"
    _name = "spawn"


class ForkServerContext(BaseContext):
    """The context of the ``forkserver`` start method."""

    __module__ = "procly.context"
    _name = "forkserver"


_CONTEXTS: dict[str, BaseContext] = {
    "fork": ForkContext(),
    "spawn": SpawnContext(),
    "forkserver": ForkServerContext(),
}


class DefaultContext(BaseContext):
    """What ``procly`` itself is: forwards to the context of the chosen start method.

    The start method is fixed by the first of ``set_start_method``, ``get_start_method()``
    or ``get_context()``; see :mod:`procly._proc._context` for the default.
    """

    __module__ = "procly.context"

    def get_context(self, method: str | None = None) -> BaseContext:
        if method is None:
            chosen = _start.START_METHOD.get()
            assert chosen is not None
            return _CONTEXTS[chosen]
        return super().get_context(method)

    def get_start_method(self, allow_none: bool = False) -> str | None:
        """The chosen start method; fixes the default unless *allow_none*."""
        return _start.START_METHOD.get(allow_none)

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        """Fix the start method of ``procly.Process`` and the module-level factories.

        Raises :class:`~procly.errors.ContextAlreadySetError` (a :class:`RuntimeError`) if it
        is already fixed and *force* is false; :class:`~procly.errors.StartMethodError` (a
        :class:`ValueError`) for an unknown method.
        """
        _start.START_METHOD.set(method, force)


default_context = DefaultContext()
_start.DEFAULT_CONTEXT.register(default_context)  # for layers that need a default (Pool)
