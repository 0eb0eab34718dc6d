"""The forkserver process (see the diagram in :mod:`._forkserver`).

Actors inside this process:

* **the loop** (the only thread): waits on the control socket and on a pipe written by the
  ``SIGCHLD`` handler (``signal.set_wakeup_fd``); a request is forked at once, a wake-up
  reaps every finished child and sends its exit code on the child's status socket.
* **each child**: closes everything that belongs to the server (control socket, wake-up
  pipe, other children's status sockets), restores default signal handling and runs the
  payload like a spawned child; it never returns to the loop.

The server ignores ``SIGINT`` (a Ctrl-C in the terminal is for the user's program, which
decides what its children do) and exits when the control socket reaches end-of-file.
"""

from __future__ import annotations

import os
import pickle
import selectors
import signal
import socket
import sys

from ..._os._fds import close_quietly, recv_with_fds
from .._lifeline import LIFELINE
from .._process import close_stdin
from ._bootstrap import apply_preparation, run_payload
from ._forkserver import REQUEST, STATUS

__all__ = ("main",)

_MAX_FDS = 253  # SCM_MAX_FD on Linux
def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < size:
        chunk = sock.recv(min(size - got, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _preload(control: socket.socket) -> None:
    header = _recv_exact(control, REQUEST.size)
    length, _nfds = REQUEST.unpack(header)
    prep, modules = pickle.loads(_recv_exact(control, length))
    main_requested = "__main__" in modules
    if not main_requested:
        prep.pop("main_path", None)
        prep.pop("main_name", None)
    try:
        apply_preparation(prep)
    except BaseException:  # a broken __main__ is the child's problem, reported there
        pass
    # Every child unpickles a procly process object: import it once here, not in each child.
    for name in ("procly.context", *modules):
        if name == "__main__":
            continue
        try:
            __import__(name)
        except BaseException:
            pass


def _serve(control: socket.socket) -> None:
    LIFELINE.load_prctl()  # children die with this server's only thread (see _lifeline)
    server_pid = os.getpid()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _events in selector.select():
            if key.fileobj == wake_r:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(children)
                continue
            try:
                header, fds = recv_with_fds(control, REQUEST.size, _MAX_FDS)
                length, nfds = REQUEST.unpack(header)
                payload = _recv_exact(control, length)
            except (EOFError, OSError):
                return  # the parent is gone (or closed the server): so are we
            if len(fds) != nfds or nfds < 4:
                close_quietly(fds)
                continue
            status = socket.socket(fileno=fds[0])
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    selector.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    close_quietly([wake_r, wake_w, control.fileno(), status.fileno()])
                    close_quietly([s.fileno() for s in children.values()])
                    os.dup2(fds[2], 1)
                    os.dup2(fds[3], 2)
                    close_quietly(fds[2:4])
                    LIFELINE.die_with_parent(server_pid, fds[1])
                    code = run_payload(payload, fds[1], fds[4:], watch=False)
                except BaseException:
                    # What a spawned child's interpreter prints for an uncaught error (e.g.
                    # the process object does not unpickle here); stderr is the parent's now.
                    import traceback

                    traceback.print_exc()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
            close_quietly(fds[1:])
            try:
                status.sendall(STATUS.pack(pid))
            except OSError:
                pass
            children[pid] = status
            _reap(children)  # a child may have finished before it was in the table


def _reap(children: dict[int, socket.socket]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock = children.pop(pid, None)
        if sock is None:
            continue
        try:
            sock.sendall(STATUS.pack(os.waitstatus_to_exitcode(status)))
        except OSError:
            pass
        sock.close()


def main() -> None:
    """Entry point; argv: ``forkserver <control fd>``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    close_stdin()  # once here: every child inherits the /dev/null (see close_stdin)
    control = socket.socket(fileno=int(sys.argv[2]))
    try:
        _preload(control)
    except EOFError:
        return
    _serve(control)
