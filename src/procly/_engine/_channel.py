"""The per-worker channel: one Unix stream socketpair with length-prefixed frames.

Why not a :class:`~procly.connection.Connection`: the dispatcher serves every worker from
one thread, so it needs *non-blocking* reads that return every complete frame already
received (many results per system call) and non-blocking writes with a per-worker
outgoing buffer (a blocking write to a worker that is itself blocked writing results back
would deadlock).  Both ends use the same framing: an 8-byte little-endian length, then a
pickle.

The worker's end crosses into the child as a :class:`ChannelEnd`, which pickles through
:func:`procly._serial._fdpass.reduce_fd`: under spawn and forkserver the launcher carries
the descriptor; under fork it is simply inherited.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from collections import deque

from .._errors import FrameError
from .._serial._fdpass import reduce_fd

__all__ = ("MAX_FRAME", "ChannelEnd", "FrameReader", "FrameWriter", "channel_pair", "send_frame")

_HEADER = struct.Struct("<Q")
_HLEN = _HEADER.size
#: A declared frame length above this is treated as corruption (1 TiB).
MAX_FRAME = 1 << 40
#: Frames larger than this are received straight into their own buffer.
_BIG = 1 << 20
_RECV = 1 << 18


class _FdRef:
    """Pickles as a descriptor handed over by the transport (unpickles to an ``int``)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[object, ...]:
        return reduce_fd(self.fd, self)


class ChannelEnd:
    """The worker's end of a channel, as passed to the worker process."""

    __slots__ = ("fd",)

    def __init__(self, fd: int | _FdRef) -> None:
        self.fd = fd.fd if isinstance(fd, _FdRef) else fd

    def __reduce__(self) -> tuple[object, ...]:
        return (ChannelEnd, (_FdRef(self.fd),))

    def __repr__(self) -> str:
        return f"<ChannelEnd fd={self.fd}>"

    def socket(self) -> socket.socket:
        """Wrap the descriptor (the socket then owns it)."""
        return socket.socket(fileno=self.fd)


def channel_pair() -> tuple[socket.socket, ChannelEnd]:
    """A connected pair: the parent's non-blocking socket and the worker's end."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    parent.setblocking(False)
    return parent, ChannelEnd(child.detach())


def close_end(end: ChannelEnd) -> None:
    """Close the parent's copy of a worker's end once the worker holds its own."""
    try:
        os.close(end.fd)
    except OSError:
        pass


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Blocking send of one frame (worker side)."""
    if len(payload) < 65536:
        sock.sendall(_HEADER.pack(len(payload)) + payload)
    else:
        sock.sendall(_HEADER.pack(len(payload)))
        sock.sendall(payload)


class FrameReader:
    """Accumulates bytes from a socket and splits them into frames.

    :meth:`pump` does one ``recv``; :meth:`pop` returns the complete frames received so
    far.  A frame larger than ``_BIG`` is received into a buffer of its own size, so a
    large result is copied once.  Raises :class:`~procly.errors.FrameError` on a length
    beyond :data:`MAX_FRAME`.
    """

    __slots__ = ("_big", "_big_filled", "_buf", "_sock", "frames")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._big: bytearray | None = None
        self._big_filled = 0
        self.frames: deque[bytes | bytearray] = deque()

    def pump(self) -> bool:
        """Read what is available (blocks if the socket is blocking); false on end of file.

        Raises :class:`BlockingIOError` when a non-blocking socket has nothing.
        """
        big = self._big
        if big is not None:
            view = memoryview(big)[self._big_filled :]
            n = self._sock.recv_into(view)
            if n == 0:
                return False
            self._big_filled += n
            if self._big_filled == len(big):
                self.frames.append(big)
                self._big = None
            return True
        data = self._sock.recv(_RECV)
        if not data:
            return False
        buf = self._buf
        buf += data
        self._split()
        return True

    def _split(self) -> None:
        buf = self._buf
        pos = 0
        end = len(buf)
        frames = self.frames
        while end - pos >= _HLEN:
            (length,) = _HEADER.unpack_from(buf, pos)
            if length > MAX_FRAME:
                raise FrameError(f"frame declares {length} bytes, beyond the {MAX_FRAME} limit")
            start = pos + _HLEN
            if end - start >= length:
                frames.append(buf[start : start + length])
                pos = start + length
                continue
            if length >= _BIG:
                big = bytearray(length)
                have = end - start
                big[:have] = buf[start:end]
                self._big = big
                self._big_filled = have
                pos = end
            break
        if pos:
            del buf[:pos]

    def read_frame(self) -> bytes | bytearray | None:
        """Blocking: the next frame, or ``None`` at end of file (worker side)."""
        frames = self.frames
        while not frames:
            if not self.pump():
                return None
        return frames.popleft()


class FrameWriter:
    """Non-blocking outgoing buffer of one socket (parent side)."""

    __slots__ = ("_out", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._out: deque[memoryview] = deque()

    def queue(self, payload: bytes) -> None:
        self._out.append(memoryview(_HEADER.pack(len(payload))))
        self._out.append(memoryview(payload))

    @property
    def pending(self) -> bool:
        return bool(self._out)

    def flush(self) -> bool:
        """Send as much as the socket takes now; true when everything went.

        Raises :class:`OSError` (e.g. ``BrokenPipeError``) when the worker is gone.
        """
        out = self._out
        sock = self._sock
        while out:
            try:
                sent = sock.sendmsg(list(itertools.islice(out, 64)))
            except BlockingIOError:
                return False
            while sent:
                head = out[0]
                if sent >= len(head):
                    sent -= len(head)
                    out.popleft()
                else:
                    out[0] = head[sent:]
                    sent = 0
        return True
