"""The manager's wire: sockets, length-prefixed frames and the authkey handshake (layer 3).

::

    client process                                     manager server process
    +----------------------------+                     +------------------------------+
    | thread T1 --Channel(sock)--+---- request ------> | handler thread for T1's sock |
    |           <----------------+---- reply --------- |   (one per client thread)    |
    | thread T2 --Channel(sock)--+----  ...   ------>  | handler thread for T2's sock |
    +----------------------------+                     +------------------------------+

* **connect** (:func:`connect`): opens a socket (AF_UNIX path or TCP), runs the mutual
  HMAC challenge-response (:func:`answer_challenge` then :func:`deliver_challenge`) and only
  then wraps the socket in a :class:`Channel`.  Until both sides proved they know the
  authkey, only fixed-size, non-pickle bytes are exchanged: **nothing is unpickled from an
  unauthenticated peer**.
* **server side**: the accept loop hands each new socket to a thread that runs the
  handshake under a deadline (a peer that stalls mid-handshake only costs its own thread;
  see :mod:`procly._managers._server`).
* **frames**: an 8-byte big-endian length, then the payload.  During the handshake a frame
  is at most :data:`HANDSHAKE_MAX` bytes; afterwards at most :data:`MAX_FRAME`.  A longer
  length means garbage or a hostile peer: :class:`~procly.errors.FrameError` is raised and
  the connection must be dropped (the stream cannot be resynchronised).
* One request is one ``sendall`` and its reply is normally one ``recv_into``: a
  :class:`Channel` keeps a receive buffer, so a small frame costs a single system call.

Why not :class:`procly.connection.Connection`: the manager needs a per-connection deadline
for the handshake that is independent of the accept loop, a hard cap on frame sizes before
authentication, and a reply path that costs one system call each way; all three are
properties of the socket, so this module keeps the socket.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from .._errors import FrameError
from .._proc._auth import answer_challenge, deliver_challenge

__all__ = (
    "BIG",
    "HANDSHAKE_MAX",
    "HEADER",
    "MAX_FRAME",
    "Channel",
    "accepted",
    "connect",
    "family_of",
)

#: The frame header: the payload's length, 8 bytes big-endian.
HEADER = _HDR = struct.Struct("!Q")
#: The largest frame accepted before the peer is authenticated.
HANDSHAKE_MAX = 256
#: The largest frame accepted from an authenticated peer (a larger length is garbage).
MAX_FRAME = 1 << 36
_BUFSIZE = 64 * 1024
#: What :meth:`Channel.take_frame` returns for a frame larger than the receive buffer.
BIG: Any = type("BigFrame", (), {"__repr__": lambda self: "BIG"})()


def family_of(address: Any) -> socket.AddressFamily:
    """The socket family of a manager address: a ``str`` is a Unix path, a tuple is TCP.

    Raises :class:`ValueError` for anything else.
    """
    if isinstance(address, str):
        return socket.AF_UNIX
    if isinstance(address, tuple) and len(address) in (2, 4) and isinstance(address[0], str):
        return socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    raise ValueError(f"unrecognised manager address {address!r}: expected a path or (host, port)")


class Channel:
    """One authenticated socket with framing; not thread-safe (one thread uses it at a time).

    ``recv_frame`` raises :class:`EOFError` when the peer closed the connection and
    :class:`~procly.errors.FrameError` (also an :class:`EOFError`) for a malformed length.
    """

    __slots__ = ("__weakref__", "_buf", "_end", "_start", "_view", "deadline", "max_frame", "sock")

    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME) -> None:
        self.sock = sock
        self.max_frame = max_frame
        #: While set (a :func:`time.monotonic` value), every read must end by then: the
        #: handshake's total deadline, so a peer trickling one byte at a time is cut off too.
        self.deadline: float | None = None
        self._buf = bytearray(_BUFSIZE)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __del__(self) -> None:
        self.close()

    def send_frame(self, data: bytes) -> None:
        """Send one frame; small frames go out in one system call."""
        n = len(data)
        if n > self.max_frame:
            raise FrameError(f"message of {n} bytes exceeds the frame limit of {self.max_frame}")
        if n <= _BUFSIZE:
            self.sock.sendall(_HDR.pack(n) + data)
        else:  # no copy of a large payload
            self.sock.sendall(_HDR.pack(n))
            self.sock.sendall(data)

    def roundtrip(self, data: bytes) -> bytes:
        """Send one frame and receive the one frame that answers it (the client's call).

        The common case -- a small reply arriving whole in one read -- costs one ``sendall``
        and one ``recv_into``.  Raises what :meth:`send_frame` and :meth:`recv_frame` raise.
        """
        n = len(data)
        if n > _BUFSIZE or self._start != self._end or self.deadline is not None:
            self.send_frame(data)
            return self.recv_frame()
        sock = self.sock
        sock.sendall(_HDR.pack(n) + data)
        got = sock.recv_into(self._buf)
        if got >= 8 and got == 8 + _HDR.unpack_from(self._buf)[0]:
            return bytes(self._view[8:got])
        if not got:
            raise EOFError("the peer closed the connection")
        self._start, self._end = 0, got
        return self.recv_frame()

    def send_frames(self, frames: list[bytes]) -> None:
        """Send several frames with one system call (the peer reads them in order)."""
        parts = []
        for data in frames:
            parts.append(_HDR.pack(len(data)))
            parts.append(data)
        self.sock.sendall(b"".join(parts))

    # The two methods procly._proc._auth speaks through.
    def send_bytes(self, data: bytes) -> None:
        self.send_frame(data)

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        """Raises :class:`OSError` for a frame above *maxlength*, as a Connection does."""
        data = self.recv_frame()
        if maxlength is not None and len(data) > maxlength:
            raise OSError("bad message length")
        return data

    def take_frame(self) -> Any:
        """The next complete frame already in the buffer, or ``None`` (never reads).

        Returns :data:`BIG` when the next frame does not fit the buffer (read it with
        :meth:`recv_frame`); raises :class:`~procly.errors.FrameError` for a length above
        ``max_frame``.
        """
        start = self._start
        avail = self._end - start
        if avail < 8:
            return None
        (size,) = _HDR.unpack_from(self._buf, start)
        if size > self.max_frame:
            raise FrameError(f"frame of {size} bytes exceeds the limit of {self.max_frame}")
        total = 8 + size
        if total > len(self._buf):
            return BIG
        if avail < total:
            return None
        data = bytes(self._view[start + 8 : start + total])
        self._start = start + total
        if self._start == self._end:
            self._start = self._end = 0
        return data

    def fill_once(self) -> None:
        """One read into the buffer (it must have room: call after :meth:`take_frame`).

        Raises :class:`EOFError` at end of stream, :class:`TimeoutError` past ``deadline``.
        """
        self._fill()

    def _fill(self) -> None:
        """Read whatever is available into the buffer; raises EOFError at end of stream."""
        if self._start == self._end:
            self._start = self._end = 0
        elif self._end == len(self._buf) or self._start > len(self._buf) // 2:
            # compact: move the unread tail to the front, so a whole frame fits
            tail = self._end - self._start
            self._buf[:tail] = self._view[self._start : self._end]
            self._start, self._end = 0, tail
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the peer did not complete the handshake in time")
            self.sock.settimeout(remaining)
        n = self.sock.recv_into(self._view[self._end :])
        if not n:
            raise EOFError("the peer closed the connection")
        self._end += n

    def recv_frame(self) -> bytes:
        """Receive one whole frame.

        Raises :class:`EOFError` if the peer closed the connection (also midway through a
        frame) and :class:`~procly.errors.FrameError` for a length above ``max_frame``.
        """
        if self._start == self._end and self.deadline is None:
            # Fast path: nothing buffered; a small frame usually arrives whole in one read.
            got = self.sock.recv_into(self._buf)
            if got >= 8:
                size = _HDR.unpack_from(self._buf)[0]
                if got == 8 + size and size <= self.max_frame:
                    self._start = self._end = 0
                    return bytes(self._view[8:got])
            elif not got:
                raise EOFError("the peer closed the connection")
            self._start, self._end = 0, got
        while self._end - self._start < 8:
            if self._start and self._start == self._end:
                self._start = self._end = 0
            self._fill()
        start = self._start
        (size,) = _HDR.unpack_from(self._buf, start)
        if size > self.max_frame:
            raise FrameError(f"frame of {size} bytes exceeds the limit of {self.max_frame}")
        total = 8 + size
        if self._end - start >= total:
            data = bytes(self._view[start + 8 : start + total])
            self._start = start + total
            if self._start == self._end:
                self._start = self._end = 0
            return data
        if total > len(self._buf):  # a large frame: read it straight into its own buffer
            out = bytearray(size)
            have = self._end - start - 8
            out[:have] = self._view[start + 8 : self._end]
            self._start = self._end = 0
            view = memoryview(out)
            while have < size:
                n = self.sock.recv_into(view[have:])
                if not n:
                    raise EOFError("the peer closed the connection in the middle of a frame")
                have += n
            return bytes(out)
        if start:  # make room for the whole frame after the buffered part
            tail = self._end - start
            self._buf[:tail] = self._view[start : self._end]
            self._start, self._end = 0, tail
        while self._end - self._start < total:
            self._fill()
        return self.recv_frame()


# -- the handshake -------------------------------------------------------------------------
# procly.connection's challenge-response (procly._proc._auth) runs over a Channel: it only
# needs send_bytes/recv_bytes(maxlength).  Both directions are run, so a client also knows it
# talks to the real server before it unpickles anything the server sends.


class NoServerError(ConnectionRefusedError, FileNotFoundError):
    """Raised by :func:`connect` when no server listens at a Unix-socket address because its
    file is gone (the server shut down).  A :class:`ConnectionError` like a refused TCP
    connection, and still the :class:`FileNotFoundError` the standard library raised."""


def _tune(sock: socket.socket) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect(address: Any, authkey: bytes, timeout: float | None = 20.0) -> Channel:
    """Connect to a manager server and authenticate both ways.

    Raises :class:`ConnectionRefusedError` / :class:`FileNotFoundError` when nothing listens
    there, :class:`~procly.errors.AuthenticationError` for a wrong authkey, and
    :class:`TimeoutError` when the server does not complete the handshake in *timeout*.
    """
    if not isinstance(authkey, bytes):
        raise TypeError(f"authkey should be a byte string, not {type(authkey).__name__}")
    sock = socket.socket(family_of(address), socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except FileNotFoundError as exc:
            raise NoServerError(exc.errno, f"no manager server at {address!r}") from None
        _tune(sock)
        ch = Channel(sock, HANDSHAKE_MAX)
        if timeout is not None:
            ch.deadline = time.monotonic() + timeout
        answer_challenge(ch, authkey)
        deliver_challenge(ch, authkey)
        ch.deadline = None
        sock.settimeout(None)
        ch.max_frame = MAX_FRAME
        return ch
    except BaseException:
        sock.close()
        raise


def accepted(sock: socket.socket, authkey: bytes, timeout: float) -> Channel:
    """Authenticate a freshly accepted socket within *timeout* seconds (server side).

    Raises :class:`~procly.errors.AuthenticationError`, :class:`TimeoutError`,
    :class:`EOFError` (also for a malformed frame) or :class:`OSError`; the caller closes.
    """
    sock.settimeout(timeout)
    _tune(sock)
    ch = Channel(sock, HANDSHAKE_MAX)
    ch.deadline = time.monotonic() + timeout
    deliver_challenge(ch, authkey)
    answer_challenge(ch, authkey)
    ch.deadline = None
    sock.settimeout(None)
    ch.max_frame = MAX_FRAME
    return ch
