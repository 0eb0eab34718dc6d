"""Parent-side handle of a child this process created itself (fork and spawn launchers)."""

from __future__ import annotations

import os
import select
import signal
import threading

from .._finalize import Finalize

__all__ = ("ChildHandle", "PopenBase", "close_fd", "wait_readable")


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Block until *fd* is readable (or hung up) or *timeout* seconds pass.

    Uses ``poll`` rather than ``select``: descriptors above 1023 are common in servers.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return bool(poller.poll(ms))


class PopenBase:
    """What every :class:`~procly._proc._launch.Popen` shares: a pid, a sentinel closed with
    the handle, signals that are not sent once the child is known to be gone."""

    def __init__(self, pid: int, sentinel: int) -> None:
        self.pid = pid
        self.sentinel = sentinel
        self.returncode: int | None = None
        self._lock = threading.Lock()
        # Closes the sentinel if the handle is dropped without close() (as the stdlib does).
        self._closer = Finalize(self, close_fd, (sentinel,))

    def poll(self) -> int | None:
        return self.wait(0)

    def wait(self, timeout: float | None = None) -> int | None:
        raise NotImplementedError

    def _send(self, signum: int) -> None:
        with self._lock:
            if self.returncode is None:
                try:
                    os.kill(self.pid, signum)
                except ProcessLookupError:
                    pass

    def terminate(self) -> None:
        self._send(signal.SIGTERM)

    def kill(self) -> None:
        self._send(signal.SIGKILL)

    def close(self) -> None:
        self._closer()
        self.sentinel = -1


class ChildHandle(PopenBase):
    """A :class:`~procly._proc._launch.Popen` for a direct child of this process.

    The sentinel is a pidfd where the kernel has them (nothing for the child to hold, so a
    grandchild inheriting descriptors cannot delay it), else the read end of a pipe whose
    write end only the child holds.  Reaping is serialised by a lock so that two threads
    joining the same child never race ``waitpid`` into ``ECHILD``.
    """

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:
                    # Someone else reaped it (os.wait() in user code): the status is lost.
                    self.returncode = 255
                else:
                    if pid == self.pid:
                        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None and self.sentinel >= 0:
            if not wait_readable(self.sentinel, timeout):
                return None
            if self.poll() is None:
                # A pipe sentinel hangs up a moment before the child becomes reapable.
                self._reap_blocking()
        return self.poll()

    def _reap_blocking(self) -> None:
        with self._lock:
            if self.returncode is None:
                try:
                    _pid, status = os.waitpid(self.pid, 0)
                except ChildProcessError:
                    self.returncode = 255
                else:
                    self.returncode = os.waitstatus_to_exitcode(status)


def close_fd(fd: int) -> None:
    """Close *fd*, ignoring an already closed one."""
    try:
        os.close(fd)
    except OSError:
        pass
