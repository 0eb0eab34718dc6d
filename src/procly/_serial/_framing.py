"""Length-prefixed frames over a byte stream, with out-of-band buffers and descriptors (layer 0).

::

    sender process                                         receiver process
    ──────────────                                         ────────────────
    send(obj)                                              recv()
      │ dumps_oob(obj) -> stream, [buf0, buf1 ...]           │ FrameReader.read_header()
      │ header(kind, nfds, nbufs, len(stream))               │   one recv(msg)_into into a reusable
      │ + nbufs x u64 sizes                                  │   buffer: header (+ small payload,
      ▼                                                      │   + any read-ahead) and SCM_RIGHTS
    send_parts(): ONE sendmsg([header, stream, buf0, ...],   │ payload: a view of that buffer when
                  SCM_RIGHTS fds)  ───── socket ─────────▶   │   small, else recv_into straight into
                  (scatter-gather: no concatenation)         │   a fresh buffer (no extra copy)
                                                             ▼ loads(stream, buffers=[fresh buffers])

* **Sender** (any thread holding the connection): builds the header and hands the kernel the
  list of buffers; large buffers are never copied in user space.  Descriptors ride as
  ``SCM_RIGHTS`` ancillary data of the same ``sendmsg``, hence arrive with the frame's first
  byte.
* **Receiver**: :class:`FrameReader` keeps one reusable buffer.  A small frame costs one
  ``recv`` syscall; bytes read beyond the frame are kept for the next one (so ``poll`` must
  ask :meth:`FrameReader.buffered` before the kernel).  Received descriptors are queued in
  arrival order and claimed by the frame whose header counts them.

Wire format (little endian)::

    u8 magic 0xB5 | u8 kind | u16 nfds | u32 nbufs | u64 length   (16 bytes)
    nbufs x u64   sizes of the out-of-band buffers
    length bytes  payload (a pickle stream for KIND_PICKLE)
    buffers       each size bytes, in order

Lengths are 64-bit, so messages over 4 GiB work.  A frame that declares more than
``max_message_size`` bytes in total (default: the machine's physical memory, because a
message is materialised whole; at most 2**40) is rejected with
:class:`~procly.errors.FrameError` before anything is allocated, and so is a bad magic byte,
an unknown kind or a frame cut short by the peer.  Receive buffers for large payloads are
allocated lazily by the kernel (``mmap``/``malloc`` of fresh pages), so even an accepted lie
costs address space, not memory.  A :class:`FrameError` leaves the stream unsynchronised:
the reader refuses every later read.
"""

from __future__ import annotations

import array
import mmap
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import FrameError

__all__ = (
    "DEFAULT_BUFSIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HEADER",
    "KIND_BYTEARRAY",
    "KIND_BYTES",
    "KIND_BYTESOBJ",
    "KIND_PICKLE",
    "MAGIC",
    "MAX_FDS",
    "FrameReader",
    "Header",
    "fd_recv_into",
    "fd_sendall",
    "fd_sendmsg",
    "new_buffer",
    "new_bytes",
    "pack_header",
    "send_parts",
)

MAGIC = 0xB5
KIND_BYTES = 1  #: a ``send_bytes`` payload
KIND_PICKLE = 2  #: a pickle stream followed by its out-of-band buffers
KIND_BYTESOBJ = 3  #: ``send(b"...")``: the payload *is* the bytes object (never pickled)
KIND_BYTEARRAY = 4  #: ``send(bytearray(...))``: likewise, rebuilt as a bytearray
_KINDS = frozenset({KIND_BYTES, KIND_PICKLE, KIND_BYTESOBJ, KIND_BYTEARRAY})

HEADER = struct.Struct("<BBHIQ")
_HSIZE = HEADER.size

#: Linux refuses more than 253 descriptors in one ``SCM_RIGHTS`` message.
MAX_FDS = 253
_ANCBUF = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
#: Bound on the out-of-band buffer count of one frame (its size table is read whole).
MAX_BUFFERS = 1 << 20
#: Size of the reusable receive buffer: frames up to this size cost one ``recv``.
DEFAULT_BUFSIZE = 64 * 1024
#: Payloads from this size on are received into lazily-zeroed mmap pages, not a memset bytearray.
_MMAP_FROM = 1 << 20
_IOV_MAX = 1024
_MSG_CTRUNC = int(getattr(socket, "MSG_CTRUNC", 0))  # an int: IntFlag "&" is slow


def _cores_free() -> bool:
    """Whether the machine has a core to spare (1-minute load below CPU count - 0.5)."""
    try:
        return os.getloadavg()[0] < (os.cpu_count() or 1) - 0.5
    except OSError:  # pragma: no cover - no load average available
        return False


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - every Linux/macOS has it
        return 1 << 36


DEFAULT_MAX_MESSAGE_SIZE = min(1 << 40, max(1 << 30, _physical_memory()))


Header = tuple[int, int, Sequence[int], list[int]]
"""What :meth:`FrameReader.read_header` returns: ``(kind, length, buffer_sizes, fds)``."""


def pack_header(kind: int, length: int, sizes: Sequence[int] = (), nfds: int = 0) -> bytes:
    """The header (plus size table) of a frame; raises :class:`ValueError` for counts the
    format cannot carry."""
    if nfds > MAX_FDS:
        raise ValueError(f"cannot send {nfds} file descriptors in one message (at most {MAX_FDS})")
    if len(sizes) > MAX_BUFFERS:
        raise ValueError(f"too many out-of-band buffers in one message ({len(sizes)})")
    head = HEADER.pack(MAGIC, kind, nfds, len(sizes), length)
    if sizes:
        return head + struct.pack(f"<{len(sizes)}Q", *sizes)
    return head


def send_parts(
    sendmsg: Callable[..., int], parts: list[Any], total: int, fds: Sequence[int] = ()
) -> None:
    """Send all *parts* (bytes-like, *total* bytes together) with as few syscalls as the kernel
    allows: one scatter-gather ``sendmsg`` normally, more only after a partial send (a signal,
    more than ``IOV_MAX`` parts, or more than the kernel moves per call).

    *fds* ride as ``SCM_RIGHTS`` with the first call, i.e. with the frame's first byte.
    An interrupted send leaves the stream unsynchronised; :class:`OSError` (``EPIPE`` when the
    peer is gone) propagates.
    """
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    batch = parts if len(parts) <= _IOV_MAX else parts[:_IOV_MAX]
    sent = sendmsg(batch, anc) if anc else sendmsg(batch)
    if sent == total:
        return
    views = [memoryview(p).cast("B") for p in parts]
    remaining = total - sent
    index = 0
    while True:
        # drop the parts sent whole, then slice the one sent in part
        while index < len(views) and sent >= len(views[index]):
            sent -= len(views[index])
            index += 1
        if sent:
            views[index] = views[index][sent:]
        if remaining <= 0:
            return
        sent = sendmsg(views[index : index + _IOV_MAX])
        remaining -= sent


def fd_sendall(fd: int) -> Any:
    """``sendall`` over a raw descriptor (socket or pipe): one ``os.write`` normally."""
    write = os.write

    def sendall(data: bytes) -> None:
        sent = write(fd, data)
        if sent != len(data):  # only after a signal or on a full pipe
            view = memoryview(data)[sent:]
            while view:
                view = view[write(fd, view) :]

    return sendall


def fd_sendmsg(fd: int) -> Any:
    """A ``sendmsg`` look-alike for a pipe: ``os.writev`` (it cannot carry descriptors)."""
    writev = os.writev

    def sendmsg(buffers: list[Any], ancdata: Any = ()) -> int:
        return writev(fd, buffers)

    return sendmsg


def fd_recv_into(fd: int) -> Any:
    """A ``recv_into`` look-alike for a pipe: ``os.readv``."""
    readv = os.readv

    def recv_into(view: memoryview) -> int:
        return readv(fd, [view])

    return recv_into


def new_bytes(n: int) -> tuple[bytes | bytearray, memoryview]:
    """A fresh *n*-byte object to receive into, and a writable view of its memory.

    On CPython this is an uninitialised :class:`bytes` filled in place before anyone else
    sees it (what ``os.read`` does in C), so a large ``recv_bytes`` returns the kernel's copy
    with no second copy.  Elsewhere it is a :class:`bytearray` (the caller converts).
    """
    maker = _BytesMaker.get()
    if maker is None:
        ba = bytearray(n)
        return ba, memoryview(ba)
    return maker(n)


class _BytesMaker:
    """Builds uninitialised bytes objects via the C API (CPython only; loaded on first use)."""

    _instance: _BytesMaker | None = None
    _loaded = False

    def __init__(self) -> None:
        import ctypes

        self._ctypes = ctypes
        self._new = ctypes.pythonapi.PyBytes_FromStringAndSize
        self._new.restype = ctypes.py_object
        self._new.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
        self._offset = bytes.__basicsize__ - 1  # offset of ob_sval

    @classmethod
    def get(cls) -> _BytesMaker | None:
        if not cls._loaded:
            cls._loaded = True
            if sys.implementation.name == "cpython":
                cls._instance = cls()
        return cls._instance

    def __call__(self, n: int) -> tuple[bytes, memoryview]:
        obj: bytes = self._new(None, n)
        if n == 0:
            return obj, memoryview(bytearray())
        raw = (self._ctypes.c_char * n).from_address(id(obj) + self._offset)
        return obj, memoryview(raw).cast("B")


def new_buffer(n: int) -> bytearray | mmap.mmap:
    """A fresh writable buffer of *n* bytes for an out-of-band buffer or a big stream.

    From 1 MiB on it is a private anonymous mapping: pages come zeroed from the kernel on
    first touch (by the receive itself), with no ``memset`` pass as :class:`bytearray` does.
    """
    if n >= _MMAP_FROM:
        return mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return bytearray(n)


class FrameReader:
    """The receiving half of a framed stream (one per connection; not thread-safe).

    *recv_into* reads into a buffer (``socket.recv_into`` or an ``os.readv`` wrapper);
    *recvmsg_into*, when given (Unix sockets), is used for every read that may reach a new
    frame so that ``SCM_RIGHTS`` descriptors are never dropped.  *fd* is polled for
    :attr:`spin_seconds` before a read would block: a reply that comes within that time is
    taken without the sleep/wake-up round trip through the scheduler (which costs tens of
    microseconds, more in VMs), at the price of that much CPU per blocking receive.
    """

    __slots__ = (
        "_broken",
        "_buf",
        "_end",
        "_fds",
        "_iov",
        "_poll",
        "_recv_into",
        "_recvmsg_into",
        "_spin_allowed",
        "_spin_backoff",
        "_spin_budget",
        "_spin_skip",
        "_start",
        "_view",
        "max_message_size",
        "spin_seconds",
    )

    def __init__(
        self,
        recv_into: Callable[[memoryview], int],
        recvmsg_into: Callable[..., tuple[int, list[Any], int, Any]] | None = None,
        *,
        fd: int | None = None,
        bufsize: int = DEFAULT_BUFSIZE,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        spin_seconds: float = 0.0,
    ) -> None:
        self._recv_into = recv_into
        self._recvmsg_into = recvmsg_into
        self._buf = bytearray(max(bufsize, _HSIZE))
        self._view = memoryview(self._buf)
        self._iov = [self._view]
        self._start = 0
        self._end = 0
        self._fds: list[int] = []
        self._broken: str | None = None
        self.max_message_size = max_message_size
        self.spin_seconds = spin_seconds
        self._poll: Any = None
        self._spin_skip = 0
        self._spin_backoff = 1
        self._spin_budget = 0
        self._spin_allowed = False
        if fd is not None:
            self._poll = select.poll()
            self._poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    # -- state ----------------------------------------------------------------------------

    def buffered(self) -> int:
        """Bytes already received and not yet consumed (a partial frame counts)."""
        return self._end - self._start

    def fail(self, message: str) -> FrameError:
        """Mark the stream unusable and return the error to raise."""
        self._broken = message
        return FrameError(message)

    def close(self) -> None:
        """Close descriptors that arrived but were never claimed by a frame."""
        fds, self._fds = self._fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- reading --------------------------------------------------------------------------

    def _spin(self) -> None:
        """Poll briefly before a blocking read; back off while polling does not pay.

        Spinning only wins when the peer has a core of its own: on a machine whose run queue
        is already full (load average above the CPU count less one half, re-read every 512
        spins) it steals the peer's CPU, so it is skipped.  Each round yields the CPU, so a
        peer sharing this core runs at once.  A spin that times out doubles the number of
        blocking reads that skip spinning (up to 64), so a slow peer costs little.
        """
        # (the caller only calls when _spin_skip is 0)
        self._spin_budget -= 1
        if self._spin_budget <= 0:
            self._spin_budget = 512
            self._spin_allowed = _cores_free()
        if not self._spin_allowed:
            self._spin_skip = 511  # the machine is busy: look again in 512 blocking reads
            self._spin_budget = 1
            return
        poll = self._poll.poll
        clock = time.perf_counter
        yield_ = os.sched_yield
        end = clock() + self.spin_seconds
        while not poll(0):
            if clock() >= end:
                self._spin_backoff = min(2 * self._spin_backoff, 64)
                self._spin_skip = self._spin_backoff
                return
            yield_()
        self._spin_backoff = 1

    def _recv_some(self, view: memoryview) -> int:
        if self._recvmsg_into is None:
            return self._recv_into(view)
        n, ancdata, flags, _ = self._recvmsg_into([view], _ANCBUF)
        if ancdata or flags & _MSG_CTRUNC:
            self._ancillary(ancdata, flags)
        return n

    def _ancillary(self, ancdata: list[Any], flags: int) -> None:
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                self._fds.extend(fds)
        if flags & _MSG_CTRUNC:
            raise self.fail("file descriptors were dropped by the kernel (ancillary data truncated)")

    def _fill(self, need: int) -> None:
        """Make at least *need* (<= buffer size) bytes available in the reusable buffer."""
        if self._start + need > len(self._buf):  # not enough room after the read-ahead: compact
            have = self._end - self._start
            self._buf[:have] = bytes(self._view[self._start : self._end])
            self._start, self._end = 0, have
        while self._end - self._start < need:
            if self._end == 0:  # empty (consumers reset to 0): no slice to build
                if self._spin_skip:
                    self._spin_skip -= 1
                elif self.spin_seconds > 0 and self._poll is not None:
                    self._spin()
                n = self._recv_some(self._view)
            else:
                n = self._recv_some(self._view[self._end :])
            if n == 0:
                if self._end == self._start:
                    raise EOFError
                raise self.fail(
                    f"truncated frame: the peer closed the connection after "
                    f"{self._end - self._start} bytes of a {need}-byte header"
                )
            self._end += n

    def read_header(self) -> Header:
        """Read the next frame's header: ``(kind, length, buffer_sizes, fds)``.

        Raises :class:`EOFError` when the peer closed between frames, and
        :class:`~procly.errors.FrameError` for a corrupt, oversized or truncated header.
        """
        if self._broken is not None:
            raise FrameError(f"connection unusable after an earlier frame error: {self._broken}")
        end = self._end
        if end - self._start < _HSIZE:
            if end == 0 and self._spin_skip and self._recvmsg_into is not None:
                # The blocking ping-pong case, inlined: one recvmsg into the empty buffer.
                self._spin_skip -= 1
                n, ancdata, flags, _ = self._recvmsg_into(self._iov, _ANCBUF)
                if ancdata or flags & _MSG_CTRUNC:
                    self._ancillary(ancdata, flags)
                if n == 0:
                    raise EOFError
                self._end = n
                if n < _HSIZE:
                    self._fill(_HSIZE)
            else:
                self._fill(_HSIZE)
        magic, kind, nfds, nbufs, length = HEADER.unpack_from(self._buf, self._start)
        if magic != MAGIC or kind not in _KINDS:
            raise self.fail(
                f"corrupt frame header {bytes(self._view[self._start : self._start + _HSIZE])!r}"
            )
        self._start += _HSIZE
        sizes: Sequence[int] = ()
        if nbufs:
            if nbufs > MAX_BUFFERS:
                raise self.fail(f"corrupt frame: {nbufs} out-of-band buffers declared")
            table = bytearray(8 * nbufs)
            self.read_into(memoryview(table))
            sizes = struct.unpack(f"<{nbufs}Q", table)
        total = length + sum(sizes) if nbufs else length
        if total > self.max_message_size:
            raise self.fail(
                f"frame declares {total} bytes, more than max_message_size={self.max_message_size}"
            )
        fds: list[int] = []
        if nfds:
            if len(self._fds) < nfds:
                raise self.fail(f"frame announces {nfds} file descriptors but {len(self._fds)} arrived")
            fds = self._fds[:nfds]
            del self._fds[:nfds]
        if self._start == self._end:
            self._start = self._end = 0
        return kind, length, sizes, fds

    def take(self, n: int) -> memoryview | None:
        """The next *n* payload bytes as a view of the reusable buffer, if all are there.

        The view is valid only until the next read on this reader: consume it at once.
        """
        start = self._start
        if self._end - start < n:
            return None
        self._start = start + n
        if self._start == self._end:
            self._start = self._end = 0
        return self._view[start : start + n]

    def read_into(self, view: memoryview) -> None:
        """Fill *view* exactly with the next payload bytes (read-ahead first, then the kernel).

        Raises :class:`~procly.errors.FrameError` if the peer closes first; any exception here
        (a signal handler's too) leaves the stream unusable, since part of a frame is gone.
        """
        n = len(view)
        have = min(n, self._end - self._start)
        if have:
            view[:have] = self._view[self._start : self._start + have]
            self._start += have
            if self._start == self._end:
                self._start = self._end = 0
        pos = have
        if pos == n:
            return
        recv_into = self._recv_into
        try:
            while pos < n:
                # Ask for exactly what is left of this frame, so that no later frame's
                # descriptors can arrive with this read (plain recv_into would drop them).
                got = recv_into(view[pos:])
                if got == 0:
                    raise self.fail(
                        f"truncated frame: the peer closed the connection after {pos} of "
                        f"{n} payload bytes"
                    )
                pos += got
        except FrameError:
            raise
        except BaseException:
            self._broken = "a receive was interrupted in the middle of a frame"
            raise

    def skip(self, n: int) -> None:
        """Discard the next *n* payload bytes."""
        chunk = memoryview(bytearray(min(n, 1 << 20)))
        while n:
            step = min(n, len(chunk))
            self.read_into(chunk[:step])
            n -= step
