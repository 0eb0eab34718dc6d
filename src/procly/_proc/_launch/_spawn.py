"""The ``spawn`` start method: a fresh interpreter that receives the pickled process object.

::

    parent                                   child (new interpreter, exec'd)
    ------                                   -------------------------------
    pickle prep + process  --payload pipe--> spawn_main(): read to EOF
    (spawning(), sending_fds())              apply prep (sys.path, cwd, __main__)
    lifeline read end      --inherited fd--> watcher thread: exit on EOF
    fds collected in pickling --inherited--> receiving_fds(fds): unpickle process
    pidfd on the child  <-- exit --          process._bootstrap() -> sys.exit(code)

* The parent creates the child with :func:`os.posix_spawn` (a ``vfork``-style clone in
  glibc: no page-table copy of a large parent), writes the payload and closes its copies of
  every descriptor it handed over.
* Descriptors cross ``exec`` as temporary inheritable duplicates whose numbers are passed
  on the command line; everything else procly opens is close-on-exec.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import threading
from typing import TYPE_CHECKING, Any

from ..._os._fds import close_quietly, pidfd_open, write_all
from ..._serial._fdpass import sending_fds
from ..._serial._pickler import dumps
from .._lifeline import LIFELINE
from .._spawning import spawning
from ._bootstrap import MAIN_IMPORT
from ._child import ChildHandle

if TYPE_CHECKING:
    from .._process import BaseProcess

__all__ = ("LAUNCHER", "SpawnLauncher", "build_payload", "interpreter_args", "preparation_data")

_HEADER = struct.Struct("!I")
_CHILD_CODE = "from procly._proc._launch._bootstrap import spawn_main; spawn_main()"


def interpreter_args() -> list[str]:
    """Command-line options that make a child interpreter behave like this one
    (optimisation, warnings, ``-X`` options, isolation flags)."""
    flags = sys.flags
    args: list[str] = []
    if flags.isolated:
        args.append("-I")
    else:
        if flags.ignore_environment:
            args.append("-E")
        if flags.no_user_site:
            args.append("-s")
    if flags.optimize:
        args.append("-" + "O" * flags.optimize)
    if flags.dont_write_bytecode:
        args.append("-B")
    if getattr(flags, "safe_path", False) and not flags.isolated:
        args.append("-P")
    if flags.bytes_warning:
        args.append("-" + "b" * flags.bytes_warning)
    for option in sys.warnoptions:
        args.append("-W" + option)
    for key, value in getattr(sys, "_xoptions", {}).items():
        args.append("-X" + (key if value is True else f"{key}={value}"))
    return args


def _main_module_info() -> dict[str, Any]:
    main = sys.modules.get("__main__")
    if main is None:
        return {}
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) if spec is not None else None
    if name is not None and name != "__main__":
        return {"main_name": name}
    path = getattr(main, "__file__", None)
    if path is not None and not sys.flags.interactive:
        return {"main_path": os.path.abspath(path)}
    return {}


def preparation_data(method: str) -> dict[str, Any]:
    """What a fresh interpreter needs before it can unpickle the process object."""
    data: dict[str, Any] = {
        "sys_path": list(sys.path),
        "sys_argv": list(sys.argv),
        "cwd": os.getcwd(),
        "start_method": method,
    }
    data.update(_main_module_info())
    from .._tracker import ENV_VAR as TRACKER_ENV

    tracker = os.environ.get(TRACKER_ENV)
    if tracker is not None:
        # A forkserver's environment predates the tracker: hand the child this tree's one.
        data["environ"] = {TRACKER_ENV: tracker}
    return data


def build_payload(process: BaseProcess, method: str) -> tuple[bytes, list[int]]:
    """Pickle preparation data and *process*; returns the payload and the descriptors the
    child must receive (duplicates owned by the caller, who closes them).

    Raises :class:`~procly.errors.SerializationError` naming what does not pickle.
    """
    if MAIN_IMPORT.active:
        # Without the ``if __name__ == "__main__":`` guard every child would start children
        # of its own while re-importing the main module: refuse, as the stdlib does.
        raise RuntimeError(
            "An attempt has been made to start a new process before the current process has "
            "finished its bootstrapping phase. This probably means that you are not using fork "
            "to start your child processes and you have forgotten to use the proper idiom in "
            'the main module: if __name__ == "__main__": ...'
        )
    prep = pickle.dumps(preparation_data(method), pickle.HIGHEST_PROTOCOL)
    with spawning(), sending_fds() as channel:
        try:
            body = dumps(process)
        except BaseException:
            close_quietly(channel.fds)
            raise
    return b"".join((_HEADER.pack(len(prep)), prep, body)), channel.fds


class SpawnLauncher:
    """See :mod:`procly._proc._launch` for the contract.

    ``executable`` (``set_executable``) is the interpreter children run; it is this
    launcher's only state.
    """

    name = "spawn"

    def __init__(self) -> None:
        self.executable = sys.executable
        self._lock = threading.Lock()

    def start(self, process: BaseProcess) -> ChildHandle:
        payload, fds = build_payload(process, self.name)
        try:
            return self._launch(payload, fds)
        finally:
            close_quietly(fds)

    def spawn_interpreter(self, code: str, extra: list[str], pass_fds: list[int]) -> int:
        """Start ``executable -c code *extra`` with *pass_fds* inherited at the same numbers
        (they must already be inheritable); returns the pid."""
        argv = [self.executable, *interpreter_args(), "-c", code, *extra]
        return os.posix_spawn(self.executable, argv, os.environ)

    def _launch(self, payload: bytes, fds: list[int]) -> ChildHandle:
        read_fd, write_fd = os.pipe()
        lifeline = LIFELINE.reader()
        # Inheritable duplicates exist only between here and posix_spawn returning; other
        # threads that spawn meanwhile might inherit them, which delays nothing but an fd.
        inherit = [os.dup(fd) for fd in (read_fd, lifeline, *fds)]
        passed = len(inherit)
        child_sentinel_w = -1
        if not hasattr(os, "pidfd_open"):
            sentinel_r, child_sentinel_w = os.pipe()
            inherit.append(os.dup(child_sentinel_w))
            os.close(child_sentinel_w)
        try:
            for fd in inherit:
                os.set_inheritable(fd, True)
            pid = self.spawn_interpreter(
                _CHILD_CODE,
                [str(inherit[0]), str(inherit[1]), ",".join(str(fd) for fd in inherit[2:passed])],
                inherit,
            )
        except BaseException:
            close_quietly([write_fd] + ([sentinel_r] if child_sentinel_w >= 0 else []))
            raise
        finally:
            close_quietly(inherit)
            os.close(read_fd)
        try:
            write_all(write_fd, payload)
        except BrokenPipeError:
            pass  # the child died before reading: its exit code tells the story
        finally:
            os.close(write_fd)
        if child_sentinel_w >= 0:
            return ChildHandle(pid, sentinel_r)
        sentinel = pidfd_open(pid)
        if sentinel is None:
            from ._fork import _NoFdChild

            return _NoFdChild(pid)
        return ChildHandle(pid, sentinel)


LAUNCHER = SpawnLauncher()
