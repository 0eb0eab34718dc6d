"""Children never outlive their parent (layer 1).

Every process that starts children owns one *lifeline*: a pipe whose write end only it
holds and never writes to.  Each child gets the read end and runs a tiny daemon thread
blocked reading it.  When the parent dies, however it dies (``SIGKILL`` included), the
kernel closes the write end, the read returns end-of-file and the child exits at once; its
own children then see their lifeline break the same way, so whole trees go down.

Why not ``PR_SET_PDEATHSIG`` alone: it fires when the *thread* that created the child exits,
which kills processes started from short-lived threads, and it does not exist on macOS.
Where it is safe -- on Linux, for a child forked by a thread that lives as long as its
process (the main thread; the forkserver's only thread) -- :meth:`Lifeline.die_with_parent`
uses it instead of the watcher thread, which saves about 0.3 ms per child start; the read
end then only serves as ``parent_process().sentinel``.

Invariants:

* the write end is close-on-exec, and an ``os.register_at_fork`` hook closes it in every
  forked child (procly's fork launcher, the forkserver's children, a bare ``os.fork``), so
  only this process ever holds it;
* the forkserver receives the read end with each request (``SCM_RIGHTS``) and hands it to
  that child as its parent sentinel; on Linux the child dies with the server (which leaves
  when the process that asked for it dies), elsewhere it watches the read end.

State lives in the one object :data:`LIFELINE`.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading

from ._afterfork import register_internal

__all__ = ("LIFELINE", "Lifeline")

#: Exit status of a child whose parent died; nobody is left to read it.
PARENT_DIED_EXITCODE = 70
_PR_SET_PDEATHSIG = 1

TYPE_CHECKING = False  # not typing's: this module is on a spawned child's import path
if TYPE_CHECKING:
    from typing import Any


class Lifeline:
    """This process's lifeline pipe, and the parent's read end this process watches."""

    def __init__(self) -> None:
        #: ``set_pdeathsig(signal) -> 0 or errno``, loaded before forking (see
        #: die_with_parent); False where there is none.
        self._prctl: Any = None
        self._lock = threading.Lock()
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        #: The read end of the parent's lifeline, if this process is a child.
        self.parent_fd: int | None = None

    def reader(self) -> int:
        """The read end to hand to a new child (created on first use)."""
        fd = self._read_fd
        if fd is not None:
            return fd
        with self._lock:
            if self._read_fd is None:
                self._read_fd, self._write_fd = os.pipe()  # both close-on-exec
            return self._read_fd

    def after_fork_in_child(self) -> None:
        """Forked child: drop the parent's write end; its read end becomes what we watch.

        A grandparent's read end inherited earlier is closed: no thread watches it here.
        """
        self._lock = threading.Lock()
        old_parent = self.parent_fd
        if self._write_fd is not None:
            _close(self._write_fd)
        self.parent_fd = self._read_fd
        self._read_fd = self._write_fd = None
        if old_parent is not None and old_parent != self.parent_fd:
            _close(old_parent)

    def load_prctl(self) -> bool:
        """Load ``PR_SET_PDEATHSIG`` in the parent (so a forked child never imports
        anything for it): procly's C extension, else libc's ``prctl`` through ctypes;
        false where there is none (not Linux)."""
        if self._prctl is None:
            self._prctl = False
            if sys.platform.startswith("linux"):
                try:
                    from .._os import _native  # (module form: the import linter cannot see a .so)

                    self._prctl = _native.set_pdeathsig
                except ImportError:  # procly built without its C extension
                    try:
                        import ctypes

                        prctl = ctypes.CDLL(None, use_errno=True).prctl
                        self._prctl = lambda sig: prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
                    except (OSError, AttributeError):
                        pass
        return bool(self._prctl)

    def die_with_parent(self, parent_pid: int, fd: int) -> None:
        """In a child just forked by a thread that lives as long as its process: have the
        kernel SIGKILL this child when that thread (so the parent) exits, and keep *fd* only as
        the parent sentinel; where that is unavailable, :meth:`watch` *fd* instead."""
        if self._prctl and self._prctl(signal.SIGKILL) == 0:
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(PARENT_DIED_EXITCODE)
            self.parent_fd = fd
            return
        self.watch(fd)

    def watch(self, fd: int) -> None:
        """Exit this process as soon as the parent that holds *fd*'s write end dies."""
        self.parent_fd = fd
        # A bare _thread, not threading.Thread: start() would wait for the new thread to
        # be scheduled (about a millisecond on a busy machine, on every child start), and
        # the watcher needs none of threading's bookkeeping; it never holds a lock.
        _thread.start_new_thread(_watch, (fd,))


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 1):  # the parent never writes; data would be a stray writer
            pass
    except OSError:
        return  # the descriptor was closed under us: this process chose to stop watching
    os._exit(PARENT_DIED_EXITCODE)


LIFELINE = Lifeline()
register_internal(LIFELINE.after_fork_in_child)
