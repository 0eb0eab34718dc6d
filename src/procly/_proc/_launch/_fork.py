"""The ``fork`` start method: the child is a copy of this process (POSIX only).

Fastest, and nothing is pickled, so any object (an open file, a lock, a lambda) reaches the
child by inheritance.  The price is the usual one of ``fork`` in a multi-threaded program:
only the calling thread exists in the child, and locks held by other threads stay held
(hence :mod:`procly._proc._afterfork`).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING

from ..._os._fds import pidfd_open
from .._lifeline import LIFELINE
from ._child import ChildHandle

if TYPE_CHECKING:
    from .._process import BaseProcess

__all__ = ("LAUNCHER", "ForkLauncher")


class ForkLauncher:
    """See :mod:`procly._proc._launch` for the contract."""

    name = "fork"

    def start(self, process: BaseProcess) -> ChildHandle:
        LIFELINE.reader()  # created before fork: the after-fork hook hands it to the child
        for stream in (sys.stdout, sys.stderr):  # or buffered output is printed twice
            try:
                if stream is not None:
                    stream.flush()
            except (AttributeError, ValueError, OSError):
                pass
        if not hasattr(os, "pidfd_open"):
            read_fd, write_fd = os.pipe()
        else:
            read_fd = write_fd = -1
        # Forked by the main thread (which lives as long as this process), the child can
        # let the kernel kill it with us instead of running a watcher thread.
        by_main_thread = threading.current_thread() is threading.main_thread()
        by_main_thread = by_main_thread and LIFELINE.load_prctl()
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 1
            try:
                if read_fd >= 0:
                    os.close(read_fd)
                parent_fd = LIFELINE.parent_fd
                if parent_fd is not None:
                    if by_main_thread:
                        LIFELINE.die_with_parent(parent_pid, parent_fd)
                    else:
                        LIFELINE.watch(parent_fd)
                code = process._bootstrap(parent_fd)
            finally:
                os._exit(code)
        if write_fd >= 0:
            os.close(write_fd)
            return ChildHandle(pid, read_fd)
        sentinel = pidfd_open(pid)
        if sentinel is None:  # pidfd_open exists but the kernel refused it: block in waitpid
            return _NoFdChild(pid)
        return ChildHandle(pid, sentinel)


class _NoFdChild(ChildHandle):
    """Fallback when neither a pidfd nor a pipe is available: a pipe that a helper thread
    closes after reaping the child, so the sentinel still works."""

    def __init__(self, pid: int) -> None:
        import threading

        read_fd, self._write_fd = os.pipe()
        super().__init__(pid, read_fd)
        threading.Thread(target=self._reaper, daemon=True, name=f"procly-reap-{pid}").start()

    def _reaper(self) -> None:
        try:
            _pid, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            self.returncode = 255
        else:
            self.returncode = os.waitstatus_to_exitcode(status)
        os.close(self._write_fd)

    def poll(self) -> int | None:
        return self.returncode  # only the reaper thread reaps

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None and self.sentinel >= 0:
            from ._child import wait_readable

            wait_readable(self.sentinel, timeout)
        return self.returncode


LAUNCHER = ForkLauncher()
