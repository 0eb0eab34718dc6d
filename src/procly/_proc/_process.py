"""Process objects (layer 1): :class:`BaseProcess`, ``current_process()`` & co.

The standard library's semantics, misuse errors included (``AssertionError`` with the same
messages, ``ValueError`` after :meth:`BaseProcess.close`).  How a child is created is not
decided here: a context subclass supplies ``_Popen`` (see :mod:`procly._proc._launch`).

All per-process state (which process this is, its parent, its unjoined children, the
counter that numbers new children) lives in the one :class:`ProcessTable` :data:`TABLE`;
a forked child resets it in an after-fork hook, a spawned child builds it from the process
object it received.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping

from ._afterfork import register_internal
from ._finalize import FINALIZERS, run_finalizers
from ._spawning import is_spawning

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms

if TYPE_CHECKING:
    from typing import Any

    from ._launch import Popen

__all__ = (
    "TABLE",
    "AuthenticationString",
    "BaseProcess",
    "ProcessTable",
    "active_children",
    "close_stdin",
    "current_process",
    "exit_function",
    "parent_process",
)


class AuthenticationString(bytes):
    """The authentication key: bytes that refuse to be pickled except into a new child."""

    __module__ = "procly.process"

    def __reduce__(self) -> tuple[Any, ...]:
        if not is_spawning():
            raise TypeError(
                "Pickling an AuthenticationString object is disallowed for security reasons"
            )
        return AuthenticationString, (bytes(self),)


class BaseProcess:
    """A process running ``target(*args, **kwargs)`` (or an overridden :meth:`run`).

    Drop-in for :class:`multiprocessing.process.BaseProcess`; use a context's ``Process``
    (``procly.Process``, ``procly.get_context("spawn").Process``), which knows how to start
    it.  Misuse raises what the standard library raises: :class:`AssertionError` for
    lifecycle errors (start twice, join before start, children of a daemon, ...) and
    :class:`ValueError` once the object is closed.
    """

    __module__ = "procly.process"

    _start_method: str | None = None

    @staticmethod
    def _Popen(process_obj: BaseProcess) -> Popen:
        raise NotImplementedError

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        assert group is None, "group argument must be None for now"
        current = TABLE.current
        self._identity: tuple[int, ...] = (*current._identity, next(TABLE.counter))
        self._config: dict[str, Any] = current._config.copy()
        self._parent_pid: int | None = os.getpid()
        self._parent_name: str | None = current.name
        self._popen: Popen | None = None
        self._closed = False
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs) if kwargs is not None else {}
        self._name = name or type(self).__name__ + "-" + ":".join(str(i) for i in self._identity)
        if daemon is not None:
            self.daemon = daemon

    # -- what runs in the child ------------------------------------------------------------

    def run(self) -> None:
        """The child's work: call the target.  Override in a subclass to do something else."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    # -- lifecycle (parent side) -----------------------------------------------------------

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError("process object is closed")

    def start(self) -> None:
        """Start the child.

        Raises :class:`AssertionError` when started twice, from another process than the
        one that created it, or from a daemonic process; a
        :class:`~procly.errors.SerializationError` naming the culprit when (spawn,
        forkserver) the process object cannot be pickled.
        """
        self._check_closed()
        assert self._popen is None, "cannot start a process twice"
        assert self._parent_pid == os.getpid(), (
            "can only start a process object created by current process"
        )
        assert not TABLE.current._config.get("daemon"), (
            "daemonic processes are not allowed to have children"
        )
        TABLE.reap()
        self._popen = self._Popen(self)
        self._sentinel = self._popen.sentinel
        # The child has its copy; drop ours so arguments are not kept alive by the handle.
        del self._target, self._args, self._kwargs
        TABLE.children.add(self)

    def terminate(self) -> None:
        """Send ``SIGTERM`` (the child's ``exitcode`` becomes ``-15`` unless it handles it)."""
        self._check_closed()
        if self._popen is not None:
            self._popen.terminate()

    def kill(self) -> None:
        """Send ``SIGKILL`` (``exitcode`` becomes ``-9``)."""
        self._check_closed()
        if self._popen is not None:
            self._popen.kill()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the child ends, or at most *timeout* seconds (then check
        :attr:`exitcode` or :meth:`is_alive`: ``join`` itself does not say).

        Raises :class:`AssertionError` when called from another process or before
        :meth:`start`.
        """
        self._check_closed()
        assert self._parent_pid == os.getpid(), "can only join a child process"
        assert self._popen is not None, "can only join a started process"
        if self._popen.wait(timeout) is not None:
            TABLE.children.discard(self)

    def is_alive(self) -> bool:
        """Whether the child has started and not yet ended."""
        self._check_closed()
        if self is TABLE.current:
            return True
        assert self._parent_pid == os.getpid(), "can only test a child process"
        if self._popen is None:
            return False
        if self._popen.poll() is None:
            return True
        TABLE.children.discard(self)
        return False

    def close(self) -> None:
        """Release the resources of a finished child; the object is unusable afterwards.

        Raises :class:`ValueError` while the child is still running.
        """
        if self._popen is not None:
            if self._popen.poll() is None:
                raise ValueError(
                    "Cannot close a process while it is still running. "
                    "You should first call join() or terminate()."
                )
            self._popen.close()
            self._popen = None
            del self._sentinel
            TABLE.children.discard(self)
        self._closed = True

    # -- attributes ------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        assert isinstance(name, str), "name must be a string"
        self._name = name

    @property
    def daemon(self) -> bool:
        """Whether the child is terminated (rather than joined) when this process exits;
        a daemonic process may not start children."""
        return bool(self._config.get("daemon", False))

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        assert self._popen is None, "process has already started"
        self._config["daemon"] = daemonic

    @property
    def authkey(self) -> bytes:
        value: bytes = self._config["authkey"]
        return value

    @authkey.setter
    def authkey(self, authkey: bytes) -> None:
        self._config["authkey"] = AuthenticationString(authkey)

    @property
    def exitcode(self) -> int | None:
        """``None`` while running; else the exit status, ``-N`` if killed by signal ``N``."""
        if self._popen is None:
            return None
        return self._popen.poll()

    @property
    def ident(self) -> int | None:
        """The process id (``None`` before :meth:`start`)."""
        self._check_closed()
        if self is TABLE.current:
            return os.getpid()
        return self._popen.pid if self._popen is not None else None

    pid = ident

    @property
    def sentinel(self) -> int:
        """A descriptor that becomes ready (for ``select``/``connection.wait``) when the
        child ends.  Raises :class:`ValueError` before :meth:`start`."""
        self._check_closed()
        try:
            return self._sentinel
        except AttributeError:
            raise ValueError("process not started") from None

    def __repr__(self) -> str:
        exitcode = None
        if self is TABLE.current:
            status = "started"
        elif self._closed:
            status = "closed"
        elif self._parent_pid != os.getpid():
            status = "unknown"
        elif self._popen is None:
            status = "initial"
        else:
            exitcode = self._popen.poll()
            status = "started" if exitcode is None else "stopped"
        info = [type(self).__name__, f"name={self._name!r}"]
        if self._popen is not None:
            info.append(f"pid={self._popen.pid}")
        info.append(f"parent={self._parent_pid}")
        info.append(status)
        if exitcode is not None:
            info.append(f"exitcode={_exitcode_text(exitcode)}")
        if self.daemon:
            info.append("daemon")
        return "<{}>".format(" ".join(info))

    # -- child side ------------------------------------------------------------------------

    def _bootstrap(self, parent_sentinel: int | None = None) -> int:
        """Run in the new child: become the current process, run, report an exit code.

        An exception escaping :meth:`run` is printed to stderr and gives exit code 1;
        ``sys.exit(n)`` gives ``n`` (a non-integer is printed and gives 1).
        """
        exitcode = 1
        try:
            TABLE.become(self, parent_sentinel)
            close_stdin()
            try:
                self.run()
                exitcode = 0
            finally:
                exit_function()
        except SystemExit as exc:
            code = exc.code
            if code is None:
                exitcode = 0
            elif isinstance(code, int):
                exitcode = code
            else:
                sys.stderr.write(str(code) + "\n")
                exitcode = 1
        except BaseException:
            import traceback

            exitcode = 1
            sys.stderr.write(f"Process {self.name}:\n")
            traceback.print_exc()
        finally:
            shutdown = getattr(threading, "_shutdown", None)
            if shutdown is not None:
                shutdown()  # join the non-daemon threads the target started
            _flush_std_streams()
        return exitcode


def _exitcode_text(exitcode: int) -> str:
    if exitcode < 0:
        try:
            return "-" + signal.Signals(-exitcode).name
        except ValueError:
            pass
    return str(exitcode)


#: The ``/dev/null`` stdin :func:`close_stdin` opened in this process or, inherited by
#: fork, in an ancestor: a child forked from a procly child keeps it as it is.
_devnull_stdin: Any = None


def close_stdin() -> None:
    """A child reads nothing from the parent's terminal: stdin becomes ``/dev/null``
    (standard-library behaviour; two processes reading one terminal garble both).

    Unless it is that already (forked from a procly child): reopening it would only cost
    the child page faults on its parent's memory (a fork helper's workers)."""
    global _devnull_stdin
    if sys.stdin is None or sys.stdin is _devnull_stdin:
        return
    try:
        sys.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        try:
            sys.stdin = _devnull_stdin = open(fd, closefd=False)  # noqa: SIM115 - for life
        except BaseException:
            os.close(fd)
            raise
    except (OSError, ValueError):
        pass


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


class _MainProcess(BaseProcess):
    """The process the interpreter started in."""

    def __init__(self) -> None:
        self._identity = ()
        self._name = "MainProcess"
        self._parent_pid = None
        self._parent_name = None
        self._popen = None
        self._closed = False
        self._config = {"authkey": AuthenticationString(os.urandom(32)), "semprefix": "/mp"}


class _ParentProcess(BaseProcess):
    """What ``parent_process()`` returns in a child: name, pid and a sentinel that becomes
    ready when the parent dies (the read end of its lifeline)."""

    __module__ = "procly.process"

    def __init__(self, name: str | None, pid: int | None, sentinel: int | None) -> None:
        self._identity = ()
        self._name = name or "MainProcess"
        self._parent_pid = pid
        self._popen = None
        self._closed = False
        self._config = {}
        self._parent_sentinel = sentinel
        if sentinel is not None:
            self._sentinel = sentinel

    def is_alive(self) -> bool:
        if self._parent_sentinel is None:
            try:
                os.kill(self._parent_pid or 0, 0)
            except ProcessLookupError:
                return False
            return True
        import select

        poller = select.poll()
        poller.register(self._parent_sentinel, select.POLLIN)
        return not poller.poll(0)

    @property
    def ident(self) -> int | None:
        return self._parent_pid

    pid = ident

    def join(self, timeout: float | None = None) -> None:
        """Wait until the parent process ends (or *timeout* seconds)."""
        if self._parent_sentinel is None:
            return
        import select

        poller = select.poll()
        poller.register(self._parent_sentinel, select.POLLIN)
        poller.poll(None if timeout is None else max(0, int(timeout * 1000)))


class ProcessTable:
    """Who this process is, its parent, and its children that are not yet joined.

    The one owner of this state; :meth:`become` (child start) and :meth:`after_fork` are
    its resets.
    """

    def __init__(self) -> None:
        self.current: BaseProcess = _MainProcess()
        self.parent: BaseProcess | None = None
        self.children: set[BaseProcess] = set()
        self.counter = itertools.count(1)

    def reap(self) -> None:
        """Forget children that have ended (``active_children`` reaps as a side effect)."""
        for child in list(self.children):
            popen = child._popen
            if popen is not None and popen.poll() is not None:
                self.children.discard(child)

    def after_fork(self) -> None:
        """A forked child starts with no children of its own."""
        self.children = set()
        self.counter = itertools.count(1)

    def become(self, process: BaseProcess, parent_sentinel: int | None) -> None:
        """Make *process* the current process of this (new child) interpreter."""
        self.parent = _ParentProcess(process._parent_name, process._parent_pid, parent_sentinel)
        self.current = process
        self.children = set()
        self.counter = itertools.count(1)
        FINALIZERS.clear()
        tracker = sys.modules.get(f"{__package__}._tracker")
        if tracker is not None:  # its goodbye at exit is a finalizer too: keep that one
            tracker.rearm_exit_hook()


TABLE = ProcessTable()
register_internal(TABLE.after_fork)


def current_process() -> BaseProcess:
    """The process object of the calling process."""
    return TABLE.current


def parent_process() -> BaseProcess | None:
    """The parent's process object in a child started by procly, else ``None``."""
    return TABLE.parent


def active_children() -> list[BaseProcess]:
    """Children started by this process that are still alive (finished ones are reaped)."""
    TABLE.reap()
    return list(TABLE.children)


def exit_function() -> None:
    """The exit sequence (run once): finalizers with priority >= 0, terminate daemonic
    children, join the others, then the remaining prioritised finalizers."""
    if FINALIZERS.exiting:
        return
    FINALIZERS.exiting = True
    run_finalizers(0)
    for child in active_children():
        if child.daemon and child._popen is not None:
            child._popen.terminate()
    for child in active_children():
        child.join()
    run_finalizers()


import atexit  # noqa: E402 - registered once the functions above exist

atexit.register(exit_function)
