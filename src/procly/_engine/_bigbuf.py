"""Big out-of-band buffers (NumPy arrays) between the parent and a worker, through memfd
segments instead of the socket.

::

    sender (parent: task arguments; worker: results)          receiver (the other end)
    ---------------------------------------------------        ---------------------------------
    pickle-5 buffer >= THRESHOLD                                FrameReader completes the frame
      | lend(): a spare segment (already faulted in) or a          | borrow(record, fd): mmap the
      |   fresh memfd; ONE copy of the bytes into it               |   segment, close the fd, hand
      v                                                            v   out a view (NO copy)
    frame: 16-byte record (length, segment size) in place of      pickle.loads(..., buffers=[view])
      the bytes + the segment's fd by SCM_RIGHTS  ==socket==>     the array lives in the mapping
                                                                   |
    the next lend() sweeps the segments it lent:                  | when the array is collected,
      FREE    -> spare, refilled in place by a later lend     <---+ the header says FREE (or
      RETIRED or its channel closed -> closed, never reused         RETIRED if the receiver forked)

* **Sender** (:class:`Lender`, one per process): keeps its segments mapped (and their
  descriptors open, to pass them again), so a reused one is refilled by ``memcpy`` into
  pages that are already there.  On this kind of machine
  fresh tmpfs pages cost several times the copy (the kernel allocates and zeroes each 4 KiB
  page, shmem gets no huge pages): keeping up to :data:`MAX_SPARE_BYTES` of spares is what
  makes the second and later maps of big arrays cheap.  Spares are not kept forever: a
  daemon thread, alive only while the process has segments, closes those unused for
  :data:`DECAY_S` seconds (as allocators return idle memory), so a process that stopped
  mapping big arrays gets that memory back.  A fresh segment is filled with
  ``pwritev`` (the kernel allocates its pages without faulting a mapping).  It tracks at
  most :data:`MAX_TRACKED` lent segments: beyond that (a receiver keeping many results)
  the oldest are given away -- closed here, never reused, their pages living on in the
  receiver's mapping -- so a process never holds more than that many descriptors.
* **Receiver** (:func:`borrow`): maps the segment, closes the descriptor at once (a
  receiver keeping thousands of arrays holds no descriptor for them), and ties the release
  to the lifetime of one exporter object (a ctypes array over the mapping: every view,
  NumPy array or ``memoryview(view)`` made from it keeps it alive, so ``weakref.finalize``
  fires only when the last of them is gone).  It then writes FREE into the header, or
  RETIRED if the process forked since it mapped the segment (a forked child may still see
  the pages, so the sender must not refill them), and unmaps.  :class:`mmap.mmap` is not
  used because before Python 3.13 every mmap object keeps a descriptor of its own.
* **Nothing can leak**: a memfd has no name (nothing is ever created in ``/dev/shm``) and its
  memory is freed by the kernel when the last descriptor and mapping are gone -- when a
  worker dies holding a segment, or the parent dies with spares, there is nothing to
  clean up.  A descriptor in flight in a socket dies with the socket.  The sender never
  refills a segment whose receiver has not released it; a segment lent on a channel that
  has since closed (its worker died or was stopped mid-task) is closed, not reused.

Only Linux has ``memfd_create``; elsewhere :func:`available` is false and big buffers keep
going through the socket (scatter-gather, received into their own buffers).
"""

from __future__ import annotations

import functools
import mmap
import os
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence

from .._errors import FrameError
from .._proc._afterfork import register_internal
from .._queues._external import _write_all
from .._queues._segments import fork_generation

__all__ = (
    "MAX_FDS",
    "MAX_SPARE_BYTES",
    "RECORD",
    "REF_FLAG",
    "THRESHOLD",
    "Lender",
    "available",
    "borrow",
    "outgoing",
)

#: Buffers of at least this many bytes go through a segment.  Measured on the 2-core
#: reference machine (``Pool(2).map`` of 64 float64 arrays, warm spares, medians of 5): at
#: 256 KiB both ways cost the same, at 512 KiB segments take 44 ms against the socket's 60
#: (113 against 132 with the arrays sent back as results), at 2 MiB 138 against 265.
THRESHOLD = 512 << 10
#: At most this many segments per frame (descriptors in one ``SCM_RIGHTS`` message); a
#: frame with more big buffers sends the rest through the socket.
MAX_FDS = 64
#: Spare segments kept by one process for reuse, in bytes and in number.
MAX_SPARE_BYTES = 512 << 20
MAX_SPARES = 16
#: Lent segments a sender keeps track of (to reuse them once released).
MAX_TRACKED = 48
#: Seconds a spare may sit unused before it is returned to the system (by a daemon thread
#: that runs only while this process has segments), so a process that stopped sending big
#: buffers does not keep their memory.
DECAY_S = 10.0
#: The record that travels in the frame in place of the buffer: its length and the size
#: of the segment to map.
RECORD = struct.Struct("<QQ")
#: Bit 63 of a buffer's length word: the part is a :data:`RECORD`, the bytes are in a segment.
REF_FLAG = 1 << 63

_HEADER = 64  # the data starts here (NumPy's preferred alignment); the header: a state word
_STATE = struct.Struct("<I")
_FREE, _LENT, _RETIRED = 0, 1, 2
_PAGE = mmap.PAGESIZE


def available() -> bool:
    """Whether this platform has anonymous memory files (Linux ``memfd_create``)."""
    return sys.platform.startswith("linux") and hasattr(os, "memfd_create")


class _Libc:
    """``mmap``/``munmap`` through ctypes: a mapping that keeps no descriptor.  (ctypes is
    imported on first use: spawned workers that never see a big buffer do not pay for it.)"""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self.mmap = libc.mmap
        self.mmap.restype = ctypes.c_void_p
        self.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        self.munmap: Callable[[int, int], int] = libc.munmap
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

    def map(self, fd: int, size: int) -> int:
        """Map *size* bytes of *fd* shared and writable; the address.  Raises OSError."""
        addr = self.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == self.ctypes.c_void_p(-1).value:
            err = self.ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return int(addr)

    def exporter(self, addr: int, size: int) -> object:
        """A buffer exporter over *size* bytes at *addr* (a ctypes array: weakref-able, and
        kept alive by every view made from it)."""
        return (self.ctypes.c_char * size).from_address(addr)

    def set_u32(self, addr: int, value: int) -> None:
        self.ctypes.c_uint32.from_address(addr).value = value


@functools.cache
def _libc() -> _Libc:
    return _Libc()


def _view(exporter: object) -> memoryview:
    return memoryview(exporter).cast("B")  # type: ignore[arg-type]  # a ctypes array


class _Segment:
    __slots__ = ("addr", "fd", "idle_since", "mm", "peer", "size")

    def __init__(self, fd: int, addr: int, size: int) -> None:
        self.fd = fd
        self.addr = addr
        self.mm = _view(_libc().exporter(addr, size))  # the sender's own: header and data
        self.size = size
        self.peer: weakref.ref[socket.socket] | None = None
        self.idle_since = 0.0  # when it became a spare (time.monotonic())

    def close(self) -> None:
        self.mm.release()
        _libc().munmap(self.addr, self.size)
        os.close(self.fd)


class Lender:
    """The segments this process lends (one per process: :data:`LENDER`).

    Thread-safe: several engines' dispatcher threads may send at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: list[_Segment] = []
        self._lent: list[_Segment] = []
        self._decayer: threading.Thread | None = None

    def lend(self, view: memoryview, sock: socket.socket) -> tuple[bytes, int] | None:
        """Copy *view* into a segment lent to the peer at the other end of *sock*.

        Returns the record to send in its place and the descriptor to pass with it, or
        None (the caller sends the bytes itself) when no segment could be made.
        """
        n = view.nbytes
        need = _HEADER + n
        with self._lock:
            self._sweep()
            seg = self._take_spare(need)
        if seg is not None:
            _STATE.pack_into(seg.mm, 0, _LENT)
            seg.mm[_HEADER:need] = view
        else:
            seg = self._create(view, need)
            if seg is None:
                return None
        seg.peer = weakref.ref(sock)
        with self._lock:
            self._lent.append(seg)
            if self._decayer is None:
                self._decayer = threading.Thread(
                    target=self._decay_loop, name="procly-bigbuf-decay", daemon=True
                )
                self._decayer.start()
        return RECORD.pack(n, seg.size), seg.fd

    def _create(self, view: memoryview, need: int) -> _Segment | None:
        size = -(-need // _PAGE) * _PAGE
        try:
            fd = os.memfd_create("procly-bigbuf", os.MFD_CLOEXEC)
        except OSError:
            return None
        try:
            os.ftruncate(fd, size)
            _write_all(fd, [_STATE.pack(_LENT).ljust(_HEADER, b"\0"), view])
            addr = _libc().map(fd, size)
        except OSError:  # ENOMEM/ENOSPC: the socket carries this one
            os.close(fd)
            return None
        return _Segment(fd, addr, size)

    def _take_spare(self, need: int) -> _Segment | None:
        best = None
        for seg in self._spare:  # the smallest that fits without wasting more than half
            if need <= seg.size <= 2 * need + _PAGE and (best is None or seg.size < best.size):
                best = seg
        if best is not None:
            self._spare.remove(best)
        return best

    def _sweep(self) -> None:
        """Move released segments to the spares, close abandoned ones (lock held)."""
        keep = []
        for seg in self._lent:
            state = _STATE.unpack_from(seg.mm, 0)[0]
            if state == _FREE:
                self._keep_spare(seg)
                continue
            sock = seg.peer() if seg.peer is not None else None
            if state == _RETIRED or sock is None or sock.fileno() < 0:
                seg.close()  # its receiver may still map it: the pages live on until then
                continue
            keep.append(seg)
        while len(keep) > MAX_TRACKED:  # give the oldest away (see the module docstring)
            keep.pop(0).close()
        self._lent = keep

    def _keep_spare(self, seg: _Segment) -> None:
        seg.peer = None
        seg.idle_since = time.monotonic()
        spare = self._spare
        spare.append(seg)
        total = sum(s.size for s in spare)
        while spare and (total > MAX_SPARE_BYTES or len(spare) > MAX_SPARES):
            oldest = spare.pop(0)
            total -= oldest.size
            oldest.close()

    def stats(self) -> tuple[int, int]:
        """``(lent, spare)`` segment counts after a sweep (for tests and diagnostics)."""
        with self._lock:
            self._sweep()
            return len(self._lent), len(self._spare)

    def decay(self, now: float) -> bool:
        """Close the spares unused since ``now - DECAY_S``; True when nothing is left to
        watch (no spare, nothing lent)."""
        with self._lock:
            self._sweep()
            old = [seg for seg in self._spare if seg.idle_since <= now - DECAY_S]
            self._spare = [seg for seg in self._spare if seg.idle_since > now - DECAY_S]
            idle = not self._spare and not self._lent
        for seg in old:
            seg.close()
        return idle

    def _decay_loop(self) -> None:
        me = threading.current_thread()
        tick = threading.Event()  # never set: a timed wait between rounds
        while True:
            tick.wait(DECAY_S / 2)
            if self.decay(time.monotonic()):
                with self._lock:
                    if self._spare or self._lent:
                        continue  # something was lent meanwhile
                    if self._decayer is me:
                        self._decayer = None
                    return

    def drop_spares(self) -> None:
        """Close every spare segment, released ones included (their memory returns to the
        system once no receiver maps them)."""
        with self._lock:
            self._sweep()
            spare, self._spare = self._spare, []
        for seg in spare:
            seg.close()

    def after_fork_in_child(self) -> None:
        """A forked child drops its copies of the parent's segments, never touching their
        headers (the parent's receivers are not this child's)."""
        self._lock = threading.Lock()
        self._decayer = None  # the parent's thread does not exist here
        for seg in (*self._spare, *self._lent):
            try:
                seg.close()
            except (OSError, ValueError, BufferError):
                pass
        self._spare = []
        self._lent = []


#: This process's lender.
LENDER = Lender()
register_internal(LENDER.after_fork_in_child)


def outgoing(
    buffers: Sequence[memoryview], sock: socket.socket
) -> tuple[list[memoryview], list[int], list[int]]:
    """The parts, length words and descriptors that send *buffers* to *sock*'s peer.

    Buffers of :data:`THRESHOLD` bytes or more (up to :data:`MAX_FDS` of them) are lent
    through segments: their part is a :data:`RECORD` and their length word has bit 63 set
    (see :mod:`._channel`).  The others go as they are.
    """
    parts: list[memoryview] = []
    words: list[int] = []
    fds: list[int] = []
    big = available()
    for buf in buffers:
        view = memoryview(buf).cast("B")
        if big and view.nbytes >= THRESHOLD and len(fds) < MAX_FDS:
            lent = LENDER.lend(view, sock)
            if lent is not None:
                record, fd = lent
                parts.append(memoryview(record))
                words.append(len(record) | REF_FLAG)
                fds.append(fd)
                continue
        parts.append(view)
        words.append(view.nbytes)
    return parts, words, fds


def _release(addr: int, size: int, owner: int, generation: int) -> None:
    """The received buffer is gone: let the sender refill (or retire) its segment, unmap."""
    if os.getpid() == owner:  # not in a forked child that inherited the finalizer
        state = _FREE if fork_generation() == generation else _RETIRED
        _libc().set_u32(addr, state)
    _libc().munmap(addr, size)


def borrow(record: bytes | bytearray, fd: int) -> memoryview:
    """Map the segment a received *record* names (its descriptor *fd* is closed here) and
    return a writable view of the buffer, valid as long as any view or array made from it
    lives.  Raises :class:`~procly.errors.FrameError` if the record does not fit the
    segment, :class:`OSError` if it cannot be mapped."""
    try:
        n, size = RECORD.unpack(record)
        if n + _HEADER > size or os.fstat(fd).st_size < size:
            raise FrameError(f"a shared buffer record ({n} bytes in {size}) does not fit its segment")
        libc = _libc()
        addr = libc.map(fd, size)
    finally:
        os.close(fd)
    exporter = libc.exporter(addr + _HEADER, n)
    # not at exit: unmapping then could pull the pages from under objects still alive
    weakref.finalize(exporter, _release, addr, size, os.getpid(), fork_generation()).atexit = False
    return _view(exporter)
