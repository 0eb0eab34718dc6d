"""The per-worker channel: one Unix stream socketpair with length-prefixed frames.

Why not a :class:`~procly.connection.Connection`: the dispatcher serves every worker from
one thread, so it needs *non-blocking* reads that return every complete frame already
received (many results per system call) and non-blocking writes with a per-worker
outgoing buffer (a blocking write to a worker that is itself blocked writing results back
would deadlock).  Both ends use the same framing: an 8-byte little-endian length, then a
pickle.

Big out-of-band buffers (NumPy arrays of :data:`._bigbuf.THRESHOLD` bytes or more) do not
cross the socket: the sender copies each into a memfd segment (see :mod:`._bigbuf`, where
the data flow is drawn) and the frame carries a small record in its place, with the
segment's descriptor in ``SCM_RIGHTS`` ancillary data on the first bytes of the frame.
The reader therefore receives with ``recvmsg`` and keeps the descriptors that arrive in
order; a frame consumes one for each buffer whose length word has
:data:`._bigbuf.REF_FLAG` set.

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
from . import _bigbuf

__all__ = (
    "MAX_FRAME",
    "ChannelEnd",
    "Frame",
    "FrameReader",
    "FrameWriter",
    "channel_pair",
    "send_frame",
    "write_frame",
)

_HEADER = struct.Struct("<Q")
_HLEN = _HEADER.size
_NBUF = struct.Struct("<I")
#: Bit 63 of the length word: the frame carries out-of-band buffers after its stream.
_OOB_FLAG = 1 << 63
_MAX_BUFFERS = 1 << 16
#: A declared frame length above this is treated as corruption (1 TiB).
MAX_FRAME = 1 << 40
#: Frames larger than this are received straight into their own buffer.
_BIG = 1 << 20
_RECV = 1 << 18
#: Ancillary space for the descriptors of one frame.
_ANC = socket.CMSG_SPACE(_bigbuf.MAX_FDS * 4)
_SIZE_MASK = ~_bigbuf.REF_FLAG


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


def _rights(fds: list[int]) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]


def _sendmsg_all(sock: socket.socket, parts: list[memoryview], fds: list[int] | None = None) -> None:
    """Blocking scatter-gather send of every byte of *parts* (no joining copies); *fds*
    go with the first bytes."""
    while parts and not len(parts[0]):
        parts.pop(0)
    anc = _rights(fds) if fds else []
    while parts:
        sent = sock.sendmsg(parts[:64], anc)
        anc = []
        while sent:
            head = parts[0]
            if sent >= len(head):
                sent -= len(head)
                parts.pop(0)
            else:
                parts[0] = head[sent:]
                sent = 0
        while parts and not len(parts[0]):
            parts.pop(0)


def _oob_header(stream_len: int, words: list[int]) -> bytes:
    return (
        _HEADER.pack(stream_len | _OOB_FLAG)
        + _NBUF.pack(len(words))
        + struct.pack(f"<{len(words)}Q", *words)
    )


def send_frame(
    sock: socket.socket, payload: bytes, buffers: list[memoryview] | None = None
) -> None:
    """Blocking send of one frame (worker side); *buffers* travel out-of-band, uncopied
    through the socket or copied once into shared segments (big ones, see :mod:`._bigbuf`)."""
    if buffers:
        views, words, fds = _bigbuf.outgoing(buffers, sock)
        parts = [memoryview(_oob_header(len(payload), words)), memoryview(payload), *views]
        _sendmsg_all(sock, parts, fds)
    elif len(payload) < 65536:
        sock.sendall(_HEADER.pack(len(payload)) + payload)
    else:
        _sendmsg_all(sock, [memoryview(_HEADER.pack(len(payload))), memoryview(payload)])


def write_frame(fd: int, payload: bytes) -> None:
    """Blocking send of one frame without out-of-band buffers through the raw descriptor
    (the worker's hot path: one ``write``, no socket-object overhead)."""
    frame = _HEADER.pack(len(payload)) + payload
    sent = os.write(fd, frame)
    while sent < len(frame):  # only after a signal interrupted a large write
        sent += os.write(fd, memoryview(frame)[sent:])


#: A received frame: the bytes, or ``(stream, buffers)`` when it carried out-of-band buffers
#: (a big buffer is a view into its shared segment).
Frame = bytes | bytearray | tuple[bytearray, list[bytearray | memoryview]]


class FrameReader:
    """Accumulates bytes from a socket and splits them into frames.

    :meth:`pump` does one ``recv``; complete frames collect in :attr:`frames`.  A large
    frame, and every out-of-band buffer, is received straight into a buffer of its own
    size (``recv_into``), so a large NumPy array is copied once, by the kernel.  Raises
    :class:`~procly.errors.FrameError` on a length beyond :data:`MAX_FRAME` or too many
    buffers.
    """

    __slots__ = ("_buf", "_fds", "_filled", "_oob", "_owner", "_part", "_parts", "_refs", "_sock", "frames")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._parts: list[bytearray] | None = None
        self._part = 0
        self._filled = 0
        self._oob = False
        #: Indices (among the buffers) of the current frame's shared-segment records.
        self._refs: list[int] = []
        #: Received descriptors of shared segments, in arrival order.
        self._fds: deque[int] = deque()
        self._owner = os.getpid()
        self.frames: deque[Frame] = deque()

    def __del__(self) -> None:
        # Descriptors of a frame that never completed (its sender died mid-frame): closed
        # here, or their segments' memory would live as long as this process.  Not in a
        # forked child: the numbers may name other files there.
        if self._fds and os.getpid() == self._owner:
            for fd in self._fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def pump(self) -> bool:
        """Read what is available (blocks if the socket is blocking); false on end of file.

        Raises :class:`BlockingIOError` when a non-blocking socket has nothing.
        """
        parts = self._parts
        if parts is not None:
            target = parts[self._part]
            n, anc, flags, _ = self._sock.recvmsg_into([memoryview(target)[self._filled :]], _ANC)
            if anc or flags & socket.MSG_CTRUNC:
                self._take_fds(anc, flags)
            if n == 0:
                return False
            self._filled += n
            self._advance()
            return True
        data, anc, flags, _ = self._sock.recvmsg(_RECV, _ANC)
        if anc or flags & socket.MSG_CTRUNC:
            self._take_fds(anc, flags)
        if not data:
            return False
        buf = self._buf
        buf += data
        self._split()
        return True

    def _take_fds(self, anc: list[tuple[int, int, bytes]], flags: int) -> None:
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                self._fds.extend(struct.unpack(f"{len(data) // 4}i", data[: len(data) - len(data) % 4]))
        if flags & socket.MSG_CTRUNC:
            raise FrameError("shared-buffer descriptors were truncated in transit")

    def _oob_frame(self, parts: list[bytearray]) -> Frame:
        """The ``(stream, buffers)`` of a complete out-of-band frame, its shared-segment
        records replaced by views of their segments."""
        buffers: list[bytearray | memoryview] = list(parts[1:])
        for index in self._refs:
            if not self._fds:
                raise FrameError("a frame names a shared buffer whose descriptor did not arrive")
            buffers[index] = _bigbuf.borrow(parts[1 + index], self._fds.popleft())
        return parts[0], buffers

    def _advance(self) -> None:
        """Move past filled parts; emit the frame once every part is complete."""
        parts = self._parts
        assert parts is not None
        while self._part < len(parts) and self._filled >= len(parts[self._part]):
            self._part += 1
            self._filled = 0
        if self._part == len(parts):
            self.frames.append(self._oob_frame(parts) if self._oob else parts[0])
            self._parts = None

    def _split(self) -> None:
        buf = self._buf
        pos = 0
        end = len(buf)
        frames = self.frames
        unpack = _HEADER.unpack_from
        while end - pos >= _HLEN:
            (word,) = unpack(buf, pos)
            if word < _BIG:  # a small frame without buffers (the hot path: one result)
                start = pos + _HLEN
                stop = start + word
                if stop > end:
                    break
                frames.append(buf[start:stop])
                pos = stop
                continue
            oob = bool(word & _OOB_FLAG)
            length = word & ~_OOB_FLAG
            if length > MAX_FRAME:
                raise FrameError(f"frame declares {length} bytes, beyond the {MAX_FRAME} limit")
            start = pos + _HLEN
            sizes: tuple[int, ...] = ()
            if oob:
                if end - start < _NBUF.size:
                    break
                (count,) = _NBUF.unpack_from(buf, start)
                if count > _MAX_BUFFERS:
                    raise FrameError(f"frame declares {count} buffers")
                meta_end = start + _NBUF.size + 8 * count
                if end < meta_end:
                    break
                words = struct.unpack_from(f"<{count}Q", buf, start + _NBUF.size)
                self._refs = [i for i, w in enumerate(words) if w & _bigbuf.REF_FLAG]
                sizes = tuple(w & _SIZE_MASK for w in words) if self._refs else words
                if sum(sizes) > MAX_FRAME:
                    raise FrameError("frame buffers exceed the size limit")
                start = meta_end
            total = length + sum(sizes)
            if not oob and end - start >= length:
                frames.append(buf[start : start + length])
                pos = start + length
                continue
            if oob or length >= _BIG:
                parts = [bytearray(n) for n in (length, *sizes)]
                have = min(end - start, total)
                offset = start
                for part in parts:  # copy what has already arrived
                    take = min(len(part), start + have - offset)
                    if take > 0:
                        part[:take] = buf[offset : offset + take]
                        offset += take
                self._parts = parts
                self._oob = oob
                self._part = 0
                self._filled = 0
                consumed = offset - start
                # position inside the parts: skip the full ones, remember the partial one
                for index, part in enumerate(parts):
                    if consumed >= len(part):
                        consumed -= len(part)
                        continue
                    self._part = index
                    self._filled = consumed
                    break
                else:
                    self._part = len(parts)
                pos = offset
                if self._part == len(parts):
                    frames.append(self._oob_frame(parts) if oob else parts[0])
                    self._parts = None
                    continue
            break
        if pos:
            del buf[:pos]

    def read_frame(self) -> Frame | None:
        """Blocking: the next frame, or ``None`` at end of file (worker side)."""
        frames = self.frames
        while not frames:
            if not self.pump():
                return None
        return frames.popleft()


class _Rights:
    """A mark in a :class:`FrameWriter`'s queue: these descriptors go with the next byte."""

    __slots__ = ("fds",)

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds

    def __len__(self) -> int:
        return 1  # never counted as sent bytes: flush() stops at it


class FrameWriter:
    """Non-blocking outgoing buffer of one socket (parent side)."""

    __slots__ = ("_marks", "_out", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._out: deque[memoryview | _Rights] = deque()
        self._marks = 0  # _Rights entries in _out

    def queue(self, payload: bytes, buffers: list[memoryview] | None = None) -> None:
        """Append one frame; *buffers* are sent out-of-band, straight from their memory
        (big ones copied once into shared segments, see :mod:`._bigbuf`)."""
        if buffers:
            views, words, fds = _bigbuf.outgoing(buffers, self._sock)
            if fds:
                self._out.append(_Rights(fds))
                self._marks += 1
            self._out.append(memoryview(_oob_header(len(payload), words)))
            self._out.append(memoryview(payload))
            self._out.extend(views)
        else:
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
            if self._marks:
                try:
                    sent = self._send_marked()
                except BlockingIOError:
                    return False
            else:
                try:
                    sent = sock.sendmsg(list(itertools.islice(out, 64)))  # type: ignore[arg-type]
                except BlockingIOError:
                    return False
            while out and (sent or not len(out[0])):  # a mark is never empty: it stops here
                head = out[0]
                if sent >= len(head):
                    sent -= len(head)
                    out.popleft()
                else:
                    out[0] = head[sent:]  # type: ignore[index]  # (bytes stop before a mark)
                    sent = 0
        return True

    def _send_marked(self) -> int:
        """One ``sendmsg`` while descriptors are queued: from a mark, its descriptors go
        with the bytes after it; the bytes stop before the next mark."""
        out = self._out
        anc: list[tuple[int, int, bytes]] = []
        skip = 0
        head = out[0]
        if isinstance(head, _Rights):
            anc = _rights(head.fds)
            skip = 1
        batch: list[memoryview] = []
        for item in itertools.islice(out, skip, skip + 64):
            if isinstance(item, _Rights):
                break
            batch.append(item)
        sent = self._sock.sendmsg(batch, anc)
        if skip:
            out.popleft()
            self._marks -= 1
        return sent
