"""File-descriptor plumbing shared by the launchers (layer 0: standard library only).

Everything procly opens is close-on-exec (Python's default for new descriptors); a
descriptor crosses to a spawned child only when a launcher names it explicitly, and to a
forkserver child only as ``SCM_RIGHTS`` ancillary data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms

if TYPE_CHECKING:
    import socket

__all__ = (
    "close_quietly",
    "pidfd_open",
    "read_all",
    "read_exact",
    "recv_with_fds",
    "send_with_fds",
    "write_all",
)


def close_quietly(fds: Iterable[int]) -> None:
    """Close every descriptor in *fds*, ignoring ones that are already closed."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of *data* to *fd*.

    Raises :class:`BrokenPipeError` when the reader went away first.
    """
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, size: int) -> bytes:
    """Read exactly *size* bytes from *fd*.

    Raises :class:`EOFError` if the writer closed its end first.
    """
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError(f"end of file after {size - remaining} of {size} bytes")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_all(fd: int) -> bytes:
    """Read from *fd* until end of file."""
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def send_with_fds(sock: socket.socket, data: bytes, fds: Sequence[int]) -> None:
    """Send *data* on a stream socket, with *fds* attached to its first byte (``SCM_RIGHTS``)."""
    import socket  # lazily: a spawned child that only reads its payload never needs it

    sent = socket.send_fds(sock, [data], list(fds)) if fds else sock.send(data)
    if sent < len(data):
        sock.sendall(data[sent:])


def recv_with_fds(sock: socket.socket, size: int, maxfds: int) -> tuple[bytes, list[int]]:
    """Receive exactly *size* bytes and up to *maxfds* descriptors sent by :func:`send_with_fds`.

    Raises :class:`EOFError` when the peer closed the socket before *size* bytes arrived
    (descriptors received so far are closed first).
    """
    import socket

    data, fds, _flags, _addr = socket.recv_fds(sock, size, maxfds)
    chunks = [data]
    got = len(data)
    while got < size:
        if not chunks[-1]:
            close_quietly(fds)
            raise EOFError("peer closed the socket in the middle of a message")
        chunk = sock.recv(size - got)
        if not chunk:
            close_quietly(fds)
            raise EOFError("peer closed the socket in the middle of a message")
        chunks.append(chunk)
        got += len(chunk)
    if got == 0 and size:
        close_quietly(fds)
        raise EOFError("peer closed the socket")
    return b"".join(chunks), list(fds)


def pidfd_open(pid: int) -> int | None:
    """A descriptor that becomes readable when child *pid* exits, or ``None`` where the
    kernel (Linux < 5.3, macOS, some sandboxes) has no ``pidfd_open``."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd: int = opener(pid)
    except OSError:
        return None
    return fd
