"""Descriptor hand-over helpers behind :mod:`procly.reduction` (layer 1).

::

    process A                                   process B
    send_handle(conn, fd, pid) ── SCM_RIGHTS ──▶ recv_handle(conn) -> its own fd
    pickle(DupFd(fd)) ─── Process arg / Connection ───▶ obj.detach() -> its own fd

* ``send_handle``/``recv_handle`` and pickled :class:`DupFd` objects ride on a procly
  :class:`~procly.connection.Connection` over a Unix socket (or the launcher's descriptor list
  while a process starts), through :func:`procly._serial._fdpass.reduce_fd`.
* ``sendfds``/``recvfds`` speak raw ``SCM_RIGHTS`` on a plain :class:`socket.socket`.
"""

from __future__ import annotations

import array
import os
import pickle
import socket
from collections.abc import Sequence
from typing import IO, Any

from .._serial._fdpass import reduce_fd
from .._serial._pickler import ProcPickler

__all__ = ("DupFd", "dump", "recv_handle", "recvfds", "send_handle", "sendfds")


class _HandleArg:
    """Pickles as the descriptor it names; unpickles as the receiver's ``int`` descriptor."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return reduce_fd(self.fd, self)

    def __repr__(self) -> str:
        return f"<handle {self.fd}>"


class DupFd:
    """A descriptor wrapper whose pickle carries a duplicate of *fd* (stdlib name).

    ``detach()`` returns a descriptor the caller owns: a fresh duplicate in the process that
    made the wrapper, the transported one after unpickling.  Pickling it outside a transport
    that can carry descriptors raises :class:`~procly.errors.SerializationError`.
    """

    __slots__ = ("_fd", "_local")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._local = True

    def detach(self) -> int:
        """Return a descriptor owned by the caller."""
        if self._local:
            return os.dup(self._fd)
        self._local = True  # detached once: later calls duplicate instead of sharing
        fd = self._fd
        self._fd = os.dup(fd)
        return fd

    def __reduce__(self) -> tuple[object, tuple[Any]]:
        return _rebuild_dupfd, (_HandleArg(self._fd),)


DupFd.__module__ = "procly.reduction"


def _rebuild_dupfd(fd: int) -> DupFd:
    obj = DupFd(fd)
    obj._local = False
    return obj


def send_handle(conn: Any, handle: int, destination_pid: int | None = None) -> None:
    """Send the descriptor *handle* over the connection *conn* (a Unix socket) (stdlib name).

    *destination_pid* is accepted for compatibility (Windows needs it; POSIX does not).
    """
    conn.send(_HandleArg(handle))


def recv_handle(conn: Any) -> int:
    """Receive a descriptor sent with :func:`send_handle`; the caller owns it (stdlib name).

    Raises :class:`TypeError` if the next message is not a descriptor.
    """
    fd = conn.recv()
    if not isinstance(fd, int):
        raise TypeError(f"expected a file descriptor from send_handle(), got {type(fd).__name__}")
    return fd


def sendfds(sock: socket.socket, fds: Sequence[int]) -> None:
    """Send the descriptors *fds* over the Unix socket *sock* with one byte of data."""
    arr = array.array("i", fds)
    sock.sendmsg([bytes([len(arr) % 256])], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, arr)])


def recvfds(sock: socket.socket, size: int) -> list[int]:
    """Receive exactly *size* descriptors sent with :func:`sendfds`.

    Raises :class:`EOFError` if the peer closed, :class:`RuntimeError` if a different number
    of descriptors arrived (those are closed).
    """
    arr = array.array("i")
    msg, ancdata, _flags, _addr = sock.recvmsg(1, socket.CMSG_SPACE(size * arr.itemsize))
    if not msg and not ancdata:
        raise EOFError
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr.frombytes(data[: len(data) - len(data) % arr.itemsize])
    if len(arr) != size or (msg and msg[0] != len(arr) % 256):
        for fd in arr:
            os.close(fd)
        raise RuntimeError(f"expected {size} file descriptors, received {len(arr)}")
    return list(arr)


def dump(obj: Any, file: IO[bytes], protocol: int | None = None) -> None:
    """Pickle *obj* to *file* with procly's pickler (stdlib name)."""
    ProcPickler(file, protocol if protocol is not None else pickle.HIGHEST_PROTOCOL).dump(obj)
