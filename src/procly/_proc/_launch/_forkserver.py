"""The ``forkserver`` start method, parent side: ask one server process to fork children.

::

    parent (any thread)                       forkserver (one per parent, exec'd fresh)
    -------------------                       -----------------------------------------
    control socket  --[header + SCM_RIGHTS:   loop: selector over control + SIGCHLD pipe
                       status_b, lifeline_r,   read request -> os.fork()
                       stdout, stderr,           child: dup2 stdout/stderr, close server
                       fds...] + payload -->     fds, run_payload()
    status_a  <------------ pid (8 bytes) ---    server: send pid on status_b, remember it
    status_a  <------------ exit code -------  SIGCHLD: waitpid, send code on status_b, close
    sentinel = status_a (readable at exit)

* **Parent**: starts the server lazily (``posix_spawn``, so it inherits nothing), sends one
  request per child under a lock, keeps ``status_a`` as the child's sentinel and reads the
  pid, later the exit code, from it.  ``terminate``/``kill`` signal the pid directly (same
  user; the server reaps it, so the pid cannot be reused before its status is sent).
* **Server**: see :mod:`._forkserver_main`.  It exits when the control socket reaches EOF,
  i.e. when the parent closes it or dies; its children have the parent's lifeline and die
  with the parent, not with the server.
* **Child**: a fork of the server (modules in ``set_forkserver_preload`` already imported)
  that unpickles the payload exactly as a spawned child does.
"""

from __future__ import annotations

import os
import pickle
import socket
import struct
import threading
from typing import TYPE_CHECKING

from ..._errors import ProcessError
from ..._os._fds import close_quietly, send_with_fds
from .._afterfork import register_internal
from .._lifeline import LIFELINE
from ._child import PopenBase, wait_readable
from ._spawn import LAUNCHER as SPAWN
from ._spawn import build_payload, preparation_data

if TYPE_CHECKING:
    from .._process import BaseProcess

__all__ = ("LAUNCHER", "ForkServerLauncher", "ForkServerPopen")

#: request header: payload length, number of descriptors attached
REQUEST = struct.Struct("!QI")
#: pid, then exit code, each as a signed 64-bit integer
STATUS = struct.Struct("!q")
#: exit code reported when the server vanished before the child's status was known
UNKNOWN_EXITCODE = 255
_SERVER_CODE = "from procly._proc._launch._forkserver_main import main; main()"


class ForkServerPopen(PopenBase):
    """Handle of a forkserver child; its status arrives over ``status_a`` (the sentinel)."""

    def _read_status(self) -> None:
        data = b""
        try:
            while len(data) < STATUS.size:
                chunk = os.read(self.sentinel, STATUS.size - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        self.returncode = STATUS.unpack(data)[0] if len(data) == STATUS.size else UNKNOWN_EXITCODE

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is not None or self.sentinel < 0:
            return self.returncode
        if not wait_readable(self.sentinel, timeout):
            return None
        with self._lock:
            if self.returncode is None:
                self._read_status()
        return self.returncode


class ForkServerLauncher:
    """See :mod:`procly._proc._launch` for the contract.

    State: the server's pid and control socket (``None`` until first use, and again in a
    forked child, which must start its own server) and the preload list.
    """

    name = "forkserver"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._server_pid: int | None = None
        self.preload: list[str] = ["__main__"]

    def set_preload(self, modules: list[str]) -> None:
        """Modules the server imports once so that children start with them loaded.

        Raises :class:`TypeError` unless *modules* is a list of strings (stdlib behaviour).
        """
        if not all(isinstance(mod, str) for mod in modules):
            raise TypeError("module_names must be a list of strings")
        self.preload = list(modules)

    def after_fork(self) -> None:
        """A forked child drops the inherited control socket (never shared with the parent)."""
        self._lock = threading.Lock()
        if self._control is not None:
            try:
                self._control.close()
            except OSError:
                pass
        self._control = None
        self._server_pid = None

    def _server_alive(self) -> bool:
        if self._server_pid is None or self._control is None:
            return False
        try:
            pid, _status = os.waitpid(self._server_pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def _ensure_running(self) -> socket.socket:
        """Start the server if needed (caller holds the lock); returns the control socket."""
        if self._control is not None and self._server_alive():
            return self._control
        if self._control is not None:
            self._control.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child_fd = os.dup(theirs.fileno())
            try:
                os.set_inheritable(child_fd, True)
                pid = SPAWN.spawn_interpreter(
                    _SERVER_CODE, ["forkserver", str(child_fd)], [child_fd]
                )
            finally:
                os.close(child_fd)
        finally:
            theirs.close()
        init = pickle.dumps(
            (preparation_data(self.name), list(self.preload)), pickle.HIGHEST_PROTOCOL
        )
        ours.sendall(REQUEST.pack(len(init), 0) + init)
        self._control, self._server_pid = ours, pid
        return ours

    def start(self, process: BaseProcess) -> ForkServerPopen:
        payload, fds = build_payload(process, self.name)
        status_a, status_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # The parent's *current* stdout/stderr go along: a child writes where its parent
            # writes now, not where the parent wrote when the server started.
            passed = [status_b.fileno(), LIFELINE.reader(), 1, 2, *fds]
            header = REQUEST.pack(len(payload), len(passed))
            with self._lock:
                control = self._ensure_running()
                try:
                    send_with_fds(control, header, passed)
                    control.sendall(payload)
                except OSError as exc:
                    self._control = None
                    control.close()
                    raise ProcessError(f"the forkserver went away: {exc}") from exc
        except BaseException:
            status_a.close()
            raise
        finally:
            status_b.close()
            close_quietly(fds)
        data = b""
        while len(data) < STATUS.size:
            chunk = status_a.recv(STATUS.size - len(data))
            if not chunk:
                status_a.close()
                raise ProcessError("the forkserver failed to start the child")
            data += chunk
        return ForkServerPopen(STATUS.unpack(data)[0], status_a.detach())


LAUNCHER = ForkServerLauncher()
register_internal(LAUNCHER.after_fork)
