"""Connections between processes: :class:`Connection`, :func:`Pipe` and :func:`wait` (layer 1).

::

      process A                                          process B
    ┌──────────────────────────┐                     ┌──────────────────────────┐
    │ conn_a.send(obj)         │  AF_UNIX stream     │ conn_b.recv()            │
    │   pickle (oob buffers,   │  socketpair         │   FrameReader: header +  │
    │   fds via SCM_RIGHTS) ───┼──── frames ────────▶│   payload in one recv,   │
    │                          │                     │   big buffers recv'd in  │
    │ conn_a.recv()  ◀─────────┼──── frames ─────────┼── place; fds claimed     │
    └──────────────────────────┘  (duplex: both      └──────────────────────────┘
                                   directions)

* **Sender** (the thread calling ``send``/``send_bytes``): serializes in its own process, so a
  :class:`~procly.errors.SerializationError` is raised before one byte is sent and the
  connection stays usable; then one scatter-gather ``sendmsg`` per frame
  (:mod:`procly._serial._framing`).
* **Receiver** (the thread calling ``recv``/``poll``): a :class:`FrameReader` with a read-ahead
  buffer; ``poll`` and :func:`wait` count read-ahead bytes as readable.
* A connection is *not* thread-safe (like the standard library's): one sender and one receiver
  thread at a time.

Differences from the standard library, all invisible to code written for it:

* ``Pipe(duplex=False)`` is a socketpair too (not ``os.pipe``): the same fast path, and
  descriptors can travel through it.
* ``send(b"...")`` / ``send(bytearray(...))`` do not pickle: the object goes as is and is
  rebuilt as the same type.  ``recv_bytes`` of such a message still returns a pickle of it,
  as the standard library would.
* Before a receive would block, the reader polls for :attr:`Connection.spin_seconds`
  (50 µs by default) when the machine has a core to spare: a reply that comes within that
  time skips the scheduler's sleep/wake-up round trip, which dominates a small message's
  latency.  On a busy machine, or while replies keep missing the window, it does not spin
  (see :meth:`procly._serial._framing.FrameReader._spin`).
* A :class:`Connection` pickles by passing its descriptor (``SCM_RIGHTS`` or the launcher's
  descriptor list), so it can be a ``Process`` argument under every start method and can be
  sent through another connection.  Bytes it has read ahead cannot travel with the descriptor, so pickling
  a connection that holds some raises :class:`~procly.errors.SerializationError` (and under
  fork a child's copy shares them: let one process own each end, as with the stdlib).
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import stat
from collections.abc import Iterable
from typing import Any, TypeVar

from .._errors import BufferTooShort, SerializationError
from .._os import _wait
from .._serial import _framing as fr
from .._serial._fdpass import receiving_fds, reduce_fd, sending_fds
from .._serial._pickler import _is_plain, dumps, dumps_oob, register

__all__ = ("Connection", "Pipe", "wait")

T = TypeVar("T")

_MAGIC = fr.MAGIC
_pack = fr.HEADER.pack
_HIGHEST = pickle.HIGHEST_PROTOCOL
#: Types whose pickle no reducer can change (bytes is handled apart: it is not pickled).
_ATOMS = frozenset({int, float, str, bool, type(None), complex})
_loads = pickle.loads
_dumps = pickle.dumps
_write = os.write
_KIND_PICKLE = fr.KIND_PICKLE
#: Payloads below this size are concatenated with their header (one small copy beats an iovec).
_SMALL = 64 * 1024
#: Socket buffer size asked for a Pipe: fewer wake-ups per large message.
PIPE_SOCKET_BUFFER = 1 << 20
#: Default of :attr:`Connection.spin_seconds`.
SPIN_SECONDS = 50e-6


class Connection:
    """One end of a message connection over a socket or pipe descriptor (stdlib name).

    ``Connection(handle, readable=True, writable=True)`` takes ownership of the descriptor
    *handle*.  Objects are sent with :meth:`send` and received with :meth:`recv`; raw bytes
    with :meth:`send_bytes` / :meth:`recv_bytes` / :meth:`recv_bytes_into`.

    Raises :class:`OSError` ``"handle is closed"`` for any use after :meth:`close`, and
    :class:`OSError` when reading a write-only end or writing a read-only one, like the
    standard library.  :class:`EOFError` means the other end was closed (its subclass
    :class:`~procly.errors.FrameError` means the stream was corrupt or cut mid-message).
    """

    __slots__ = (
        "__weakref__",
        "_handle",
        "_poller",
        "_readable",
        "_reader",
        "_sendall",
        "_sendmsg",
        "_sock",
        "_unix",
        "_writable",
    )

    def __init__(self, handle: int, readable: bool = True, writable: bool = True) -> None:
        handle = handle.__index__()
        if handle < 0:
            raise ValueError("invalid handle")
        if not readable and not writable:
            raise ValueError("at least one of `readable` and `writable` must be True")
        self._handle: int | None = None  # set last: __del__ must see a half-built object as closed
        self._readable = readable
        self._writable = writable
        self._poller: Any = None
        if stat.S_ISSOCK(os.fstat(handle).st_mode):
            sock = socket.socket(fileno=handle)
            self._sock: socket.socket | None = sock
            self._unix = sock.family == socket.AF_UNIX
            self._sendall: Any = fr.fd_sendall(handle)  # os.write: cheaper than sock.sendall
            self._sendmsg: Any = sock.sendmsg
            recvmsg = sock.recvmsg_into if self._unix else None
            self._reader = fr.FrameReader(
                sock.recv_into, recvmsg, fd=handle, spin_seconds=SPIN_SECONDS
            )
        else:
            self._sock = None
            self._unix = False
            self._sendall = fr.fd_sendall(handle)
            self._sendmsg = fr.fd_sendmsg(handle)
            self._reader = fr.FrameReader(
                fr.fd_recv_into(handle), fd=handle, spin_seconds=SPIN_SECONDS
            )
        self._handle = handle

    # -- state ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True if the connection is closed."""
        return self._handle is None

    @property
    def readable(self) -> bool:
        """True if the connection is readable."""
        return self._readable

    @property
    def writable(self) -> bool:
        """True if the connection is writable."""
        return self._writable

    @property
    def spin_seconds(self) -> float:
        """Seconds a blocking receive polls before it sleeps (0 disables; module docstring)."""
        return self._reader.spin_seconds

    @spin_seconds.setter
    def spin_seconds(self, value: float) -> None:
        if not value >= 0:
            raise ValueError("spin_seconds must be >= 0")
        self._reader.spin_seconds = value

    @property
    def max_message_size(self) -> int:
        """Largest frame (bytes) this end accepts; bigger declared lengths raise FrameError."""
        return self._reader.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        if value < 0:
            raise ValueError("max_message_size must be >= 0")
        self._reader.max_message_size = value

    def fileno(self) -> int:
        """File descriptor or handle of the connection."""
        handle = self._handle
        if handle is None:
            raise OSError("handle is closed")
        return handle

    def close(self) -> None:
        """Close the connection (idempotent); pending received descriptors are closed too."""
        handle = self._handle
        if handle is None:
            return
        self._handle = None
        try:
            if self._sock is not None:
                self._sock.close()
            else:
                os.close(handle)
        finally:
            self._reader.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else f"fd={self._handle}"
        mode = ("r" if self._readable else "") + ("w" if self._writable else "")
        return f"<procly.connection.Connection {state} {mode}>"

    def _procly_buffered(self) -> bool:
        """Read-ahead bytes count as readable for :func:`wait` (see :mod:`procly._os._wait`)."""
        return self._handle is not None and self._reader.buffered() > 0

    def _check_write(self) -> None:
        if self._handle is None:
            raise OSError("handle is closed")
        if not self._writable:
            raise OSError("connection is read-only")

    def _check_read(self) -> None:
        if self._handle is None:
            raise OSError("handle is closed")
        if not self._readable:
            raise OSError("connection is write-only")

    # -- sending ----------------------------------------------------------------------------

    def send(self, obj: Any) -> None:
        """Send *obj*, which the other end reads with :meth:`recv`.

        Pickled here (protocol 5, large buffers out-of-band, lambdas and closures by value),
        so :class:`~procly.errors.SerializationError` -- naming the culprit -- is raised before
        anything is sent.  Objects holding descriptors (connections, ...) can only be sent
        over a Unix socket.
        """
        if self._handle is None or not self._writable:
            self._check_write()
        cls = type(obj)
        if cls in _ATOMS:  # the round-trip fast path: no pickler object, no fd channel
            stream = _dumps(obj, _HIGHEST)
            if len(stream) < _SMALL:
                data = _pack(_MAGIC, _KIND_PICKLE, 0, 0, len(stream)) + stream
                sent = _write(self._handle, data)  # type: ignore[arg-type]  # checked above
                if sent != len(data):  # a signal, or a full socket buffer
                    self._sendall(memoryview(data)[sent:])
                return
            self._send_frame(fr.KIND_PICKLE, stream)
            return
        if cls is bytes:
            self._send_frame(fr.KIND_BYTESOBJ, obj)
            return
        if cls is bytearray:
            self._send_frame(fr.KIND_BYTEARRAY, obj)
            return
        if _is_plain(obj):
            stream = pickle.dumps(obj, _HIGHEST)
            if len(stream) < _SMALL:
                self._sendall(_pack(_MAGIC, fr.KIND_PICKLE, 0, 0, len(stream)) + stream)
                return
            self._send_frame(fr.KIND_PICKLE, stream)
            return
        with sending_fds() as channel:
            stream, buffers = dumps_oob(obj)
        fds = channel.fds
        try:
            if fds and not self._unix:
                raise SerializationError(
                    f"{obj!r} holds file descriptors, which only a connection over a Unix "
                    "socket can carry"
                )
            self._send_frame(fr.KIND_PICKLE, stream, buffers, fds)
        finally:
            for fd in fds:  # the duplicates made while pickling; the peer has its own now
                os.close(fd)

    def send_bytes(self, buf: Any, offset: int = 0, size: int | None = None) -> None:
        """Send the bytes of the bytes-like *buf* (from *offset*, *size* bytes) as one message.

        Raises :class:`ValueError` for a negative or out-of-range *offset* / *size*.
        """
        self._check_write()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast("B")
        n = m.nbytes
        if offset < 0:
            raise ValueError("offset is negative")
        if n < offset:
            raise ValueError("buffer length < offset")
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError("size is negative")
        elif offset + size > n:
            raise ValueError("buffer length < offset + size")
        if offset or size != n:
            m = m[offset : offset + size]
        self._send_frame(fr.KIND_BYTES, m)

    def _send_frame(
        self,
        kind: int,
        payload: Any,
        buffers: list[memoryview] | None = None,
        fds: list[int] | None = None,
    ) -> None:
        n = len(payload) if type(payload) is not memoryview else payload.nbytes
        if not buffers and not fds:
            if n < _SMALL:
                self._sendall(_pack(_MAGIC, kind, 0, 0, n) + payload)
                return
            fr.send_parts(self._sendmsg, [_pack(_MAGIC, kind, 0, 0, n), payload], _HSIZE + n)
            return
        sizes = [b.nbytes for b in buffers] if buffers else []
        head = fr.pack_header(kind, n, sizes, len(fds) if fds else 0)
        parts: list[Any] = [head, payload]
        if buffers:
            parts.extend(buffers)
        fr.send_parts(self._sendmsg, parts, len(head) + n + sum(sizes), fds or ())

    # -- receiving --------------------------------------------------------------------------

    def recv(self) -> Any:
        """Return the next object the other end sent.

        Blocks until a message arrives.  Raises :class:`EOFError` when the other end was
        closed and nothing is left, :class:`~procly.errors.FrameError` for a corrupt or
        truncated message, and whatever unpickling raises.
        """
        if self._handle is None or not self._readable:
            self._check_read()
        reader = self._reader
        kind, length, sizes, fds = reader.read_header()
        if kind == _KIND_PICKLE and not sizes and not fds:
            stream = reader.take(length)
            if stream is None:
                stream = self._read_buffer(length)
            return _loads(stream)
        return self._finish(kind, length, sizes, fds)

    def _finish(self, kind: int, length: int, sizes: Any, fds: list[int]) -> Any:
        reader = self._reader
        try:
            if kind == fr.KIND_BYTESOBJ:
                return self._read_bytes(length)
            if kind == fr.KIND_BYTEARRAY:
                data = bytearray(length)
                reader.read_into(memoryview(data))
                return data
            stream: Any = reader.take(length)
            if stream is None:
                stream = self._read_buffer(length)
            buffers = [self._read_buffer(n) for n in sizes]
        except BaseException:
            _close_all(fds)
            raise
        if fds:
            # Descriptors not claimed by an object (a failed unpickle) are closed afterwards.
            with receiving_fds(fds):
                try:
                    return _loads(stream, buffers=buffers)
                except BaseException:
                    _close_all(fds)
                    raise
        return _loads(stream, buffers=buffers)

    def _read_buffer(self, n: int) -> Any:
        buf = fr.new_buffer(n)
        self._reader.read_into(memoryview(buf))
        return buf

    def _read_bytes(self, n: int) -> bytes:
        view = self._reader.take(n)
        if view is not None:
            return bytes(view)
        obj, target = fr.new_bytes(n)
        self._reader.read_into(target)
        return obj if type(obj) is bytes else bytes(obj)

    def _payload_as_bytes(self, maxlength: int | None) -> bytes:
        """The next message as the bytes the standard library's ``recv_bytes`` would return."""
        reader = self._reader
        kind, length, sizes, fds = reader.read_header()
        total = length + sum(sizes)
        if maxlength is not None and total > maxlength:
            # Like the standard library, do not read the message (it may be huge or never
            # come): this end stops being readable instead.
            _close_all(fds)
            reader.fail(f"a {total}-byte message exceeded maxlength={maxlength}")
            self._bad_message_length()
        return self._bytes_after(kind, length, sizes, fds)

    def _bytes_after(self, kind: int, length: int, sizes: Any, fds: list[int]) -> bytes:
        if kind == fr.KIND_BYTES or (kind == fr.KIND_PICKLE and not sizes and not fds):
            return self._read_bytes(length)  # the raw payload; nothing is unpickled
        if kind == fr.KIND_BYTESOBJ:
            return pickle.dumps(self._read_bytes(length), _HIGHEST)
        if fds:
            _close_all(fds)
            self._reader.skip(length + sum(sizes))
            raise OSError("the message carries file descriptors: receive it with recv()")
        # a bytearray, or a pickle with out-of-band buffers: re-pickle it self-contained
        return dumps(self._finish(kind, length, sizes, fds))

    def _bad_message_length(self) -> None:
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise OSError("bad message length")

    def recv_bytes(self, maxlength: int | None = None) -> bytes:
        """Return the bytes of the next message (sent with :meth:`send_bytes`).

        Raises :class:`ValueError` for a negative *maxlength*; :class:`OSError`
        ``"bad message length"`` for a longer message, after which this end is no longer
        readable (closed if it was read-only), as in the standard library.
        """
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        self._check_read()
        return self._payload_as_bytes(maxlength)

    def recv_bytes_into(self, buf: Any, offset: int = 0) -> int:
        """Read the next message into the writable buffer *buf* at byte *offset*.

        Returns the message size in bytes.  Raises :class:`~procly.BufferTooShort`, whose
        ``args[0]`` is the whole message, if it does not fit (the message is consumed);
        :class:`ValueError` for a negative or too large *offset*; :class:`TypeError` for a
        read-only buffer (before anything is received).
        """
        self._check_read()
        with memoryview(buf) as m:
            bytesize = m.nbytes
            if offset < 0:
                raise ValueError("negative offset")
            if offset > bytesize:
                raise ValueError("offset too large")
            if m.readonly:
                raise TypeError("recv_bytes_into() needs a writable buffer")
            flat = m.cast("B") if m.format != "B" or m.ndim != 1 else m
            reader = self._reader
            kind, length, sizes, fds = reader.read_header()
            if kind == fr.KIND_BYTES or (kind == fr.KIND_PICKLE and not sizes and not fds):
                if offset + length > bytesize:
                    raise BufferTooShort(self._read_bytes(length))
                reader.read_into(flat[offset : offset + length])
                return length
            data = self._bytes_after(kind, length, sizes, fds)
            if offset + len(data) > bytesize:
                raise BufferTooShort(data)
            flat[offset : offset + len(data)] = data
            return len(data)

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether there is data to read (or the other end closed), waiting up to *timeout*
        seconds; ``None`` waits for ever, a negative timeout is zero."""
        self._check_read()
        if self._reader.buffered():
            return True
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        if timeout is None:
            return bool(poller.poll())
        ms = 0 if timeout <= 0 else max(1, -int(-timeout * 1000 // 1))
        return bool(poller.poll(ms))


_HSIZE = fr.HEADER.size
Connection.__module__ = "procly.connection"


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:
    """Return ``(conn1, conn2)``, the two ends of a new pipe (stdlib name).

    With *duplex* both ends send and receive; otherwise *conn1* only receives and *conn2* only
    sends.  Both kinds are a Unix socketpair (see the module docstring).
    """
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_SOCKET_BUFFER)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PIPE_SOCKET_BUFFER)
    except OSError:  # pragma: no cover - a kernel that refuses keeps its default sizes
        pass
    if duplex:
        return Connection(a.detach()), Connection(b.detach())
    return Connection(a.detach(), writable=False), Connection(b.detach(), readable=False)


def wait(object_list: Iterable[T], timeout: float | None = None) -> list[T]:
    """Wait until an object in *object_list* is ready; return the ready ones (stdlib name).

    Accepts :class:`Connection` objects, sockets, raw descriptors (``Process.sentinel``) and
    anything with ``fileno()``.  An empty list means *timeout* expired.
    """
    return _wait.wait(object_list, timeout)


# -- pickling: a Connection travels as its descriptor ----------------------------------------


class _FdArg:
    """Pickles as the descriptor it names (see :func:`procly._serial._fdpass.reduce_fd`)."""

    __slots__ = ("fd", "owner")

    def __init__(self, fd: int, owner: object) -> None:
        self.fd = fd
        self.owner = owner

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return reduce_fd(self.fd, self.owner)


def _rebuild_connection(fd: int, readable: bool, writable: bool) -> Connection:
    return Connection(fd, readable, writable)


def _reduce_connection(conn: Connection) -> tuple[Any, ...]:
    fd = conn.fileno()
    pending = conn._reader.buffered()
    if pending:
        # Those bytes were read ahead from the kernel and would not travel with the
        # descriptor: the receiver would start mid-stream.
        raise SerializationError(
            f"{conn!r} holds {pending} received bytes not yet consumed; recv() them before "
            "sending the connection to another process"
        )
    return (_rebuild_connection, (_FdArg(fd, conn), conn.readable, conn.writable))


register(Connection, _reduce_connection)
