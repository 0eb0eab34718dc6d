"""Big items: one shared-memory segment per item, received without a copy (layer 2).

An item whose pickle is large, or that carries pickle-5 out-of-band buffers (NumPy arrays,
:class:`pickle.PickleBuffer`), does not go through the ring: the producer writes the pickle
stream and every buffer into a fresh segment (one ``pwritev``, which allocates and fills the
pages in the kernel) and only a small *descriptor* record -- the segment's name and layout --
enters the ring.  The consumer that takes the record opens the segment, unlinks its name at
once (so ``/dev/shm`` holds it no longer than the item is queued), maps it and unpickles
with the buffers pointing *into the mapping*: a 64 MiB array is never copied on the
receiving side, and its memory returns to the system when the array is garbage-collected.

Lifetimes (who unlinks a name):

* the consumer that takes the descriptor records itself as the segment's holder while it
  holds the queue's lock; once the received object is garbage-collected the segment is
  recycled for a later big put or unlinked (see :mod:`._segments`), and a consumer killed
  at any moment is noticed by pid and its segments unlinked;
* a producer whose ``put`` fails (timeout, full) unlinks its own segment;
* a producer killed between creating the segment and publishing it: its name sits in the
  queue's *pending* table with its pid, and the next process that finds the pid dead (lock
  recovery, or the next big put) unlinks it;
* descriptors still queued, and spares, when the queue loses its last user: see below.

The resource tracker (:mod:`procly._proc._tracker`) does the rest, also when every process
involved was SIGKILLed (nobody is left to reap the tables).  Every big-item segment is
tracker-owned, reference counted (``register(pin=False)``), and always has a tracker
reference while it exists:

* filling: the producer's own use (``register`` counts as one);
* queued (descriptor in the ring) or spare: a *hold* tied to the queue's name
  (``hold(parent=...)``), whose token travels in the descriptor (or sits next to the name
  in the spare table); the producer drops its use once the hold is sent (same connection,
  so the tracker sees them in order);
* received: the consumer's use (``use``, then ``release_hold`` of the descriptor's token);
  recycling it into the spare table takes a new hold before the use is dropped.

The queue's own name is reference counted by the tracker too (one use per process holding
the queue, see :mod:`._queue`): when the last user closes it, drops it or dies, the tracker
reclaims the queue and with it every hold tied to it, so undelivered items and spares are
unlinked while the rest of the process tree lives on.  Whoever unlinks a name says so
(``unregister``) and drops its own reference; a hold whose token got lost (a producer
killed between taking a spare and publishing) lasts until the queue is reclaimed.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import posix_ipc

from .._proc import _tracker

__all__ = ("Opened", "layout_size", "load", "open_segment", "unlink", "unlink_payload", "write")

#: Buffers start at multiples of this inside a segment (NumPy's preferred alignment).
ALIGN = 64
#: Largest single write(2) Linux performs.
_MAX_WRITE = 0x7FFFF000


def _path(name: str) -> str:
    return "/" + name


def unlink(name: str) -> None:
    """Unlink segment *name*; a name already gone is not an error."""
    try:
        posix_ipc.unlink_shared_memory(_path(name))
    except posix_ipc.ExistentialError:
        pass


def forget(name: str, *, use: bool = False, token: str | None = None) -> None:
    """Unlink *name* and tell the tracker: it no longer owns the name, this process drops
    its use (if *use*) and the hold *token* (if given) is released."""
    unlink(name)
    with contextlib.suppress(OSError):  # the name is gone: the rest is bookkeeping
        _tracker.unregister("shm", name, lazy=True)
        if token:
            _tracker.release_hold("shm", name, token)
        if use:
            _tracker.release("shm", name, lazy=True)


def _write_all(fd: int, pieces: list[Any]) -> None:
    views = [memoryview(p).cast("B") for p in pieces if len(p)]
    offset = 0
    while views:
        batch: list[memoryview] = []
        total = 0
        for v in views:  # stay under the per-call byte and iovec limits
            if len(batch) >= 512 or total + v.nbytes > _MAX_WRITE:
                break
            batch.append(v)
            total += v.nbytes
        if not batch:  # one piece bigger than a write can take
            batch, total = [views[0][:_MAX_WRITE]], _MAX_WRITE
        written = os.pwritev(fd, batch, offset)
        offset += written
        while written:  # drop what was written, keep the rest
            head = views[0]
            if head.nbytes <= written:
                written -= head.nbytes
                views.pop(0)
            else:
                views[0] = head[written:]
                written = 0


def layout_size(stream: bytes, buffers: Sequence[memoryview]) -> int:
    """Bytes a segment needs for *stream* and *buffers* (what :func:`write` will use)."""
    offset = len(stream)
    for buf in buffers:
        offset += (-offset) % ALIGN + buf.nbytes
    return offset


def write(
    name: str, stream: bytes, buffers: Sequence[memoryview], capacity: int | None = None, token: str = ""
) -> bytes:
    """Fill segment *name* with *stream* and *buffers*; return the descriptor payload
    (which carries the tracker hold *token* to its receiver).

    With *capacity* None the segment is created; otherwise it is an existing (spare)
    segment of that many bytes, refilled in place.  Raises :class:`OSError` (``ENOSPC``
    when ``/dev/shm`` is full); the segment is then unlinked.
    """
    pieces: list[Any] = [stream]
    spans: list[tuple[int, int]] = []
    offset = len(stream)
    for buf in buffers:
        pad = (-offset) % ALIGN
        if pad:
            pieces.append(bytes(pad))
            offset += pad
        spans.append((offset, buf.nbytes))
        pieces.append(buf)
        offset += buf.nbytes
    try:
        if capacity is None:
            shm = posix_ipc.SharedMemory(_path(name), posix_ipc.O_CREX, mode=0o600, size=0)
        else:
            shm = posix_ipc.SharedMemory(_path(name))
    except posix_ipc.ExistentialError as exc:
        raise FileExistsError(f"big-item segment {name!r}: {exc}") from None
    try:
        _write_all(shm.fd, pieces)
    except BaseException:
        unlink(name)
        raise
    finally:
        shm.close_fd()
    capacity = max(offset, capacity or 0)
    return pickle.dumps((name, offset, len(stream), spans, capacity, token), pickle.HIGHEST_PROTOCOL)


class Opened:
    """A taken big item: an open descriptor of its segment.

    ``on_release`` (set by the queue when it may recycle the segment) is called once the
    unpickled object no longer maps the segment; otherwise the name was already unlinked.
    """

    __slots__ = ("capacity", "fd", "name", "on_release", "size", "spans", "stream_len", "token")

    def __init__(
        self, name: str, fd: int, size: int, stream_len: int, spans: list[tuple[int, int]], capacity: int,
        token: str | None = "",
    ) -> None:
        # The descriptor's tracker hold until adopt(); None once adopted (or given up).
        self.token = token
        self.name = name
        self.fd = fd
        self.size = size
        self.stream_len = stream_len
        self.spans = spans
        self.capacity = capacity
        self.on_release: Callable[[], None] | None = None

    def adopt(self) -> None:
        """Tell the tracker this process now uses the segment, in place of the descriptor's
        hold (in this order, so it is never unreferenced).  Done after the queue lock is
        released: until then the hold keeps the segment, and the queue's pending table
        names this process as its holder."""
        token, self.token = self.token, None
        if token is not None:
            # A tracker that cannot be reached must not cost the item, which is taken
            # already: the queue's pending table still names this process as its holder.
            with contextlib.suppress(OSError):
                _tracker.use("shm", self.name)
                if token:
                    _tracker.release_hold("shm", self.name, token)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Give the item up without loading it (its segment is released at once)."""
        self.adopt()
        self.close()
        if self.on_release is not None:
            self.on_release()
            self.on_release = None


def unlink_payload(payload: bytes | bytearray | memoryview) -> None:
    """Unlink the segment a descriptor names (cleanup of items nobody will take)."""
    desc = pickle.loads(payload)
    forget(desc[0], token=desc[5])


def open_segment(payload: bytes | bytearray | memoryview) -> Opened | None:
    """Open the segment described by *payload*; None if it is gone already.

    Called under the queue's lock, before the record is consumed; the caller then either
    unlinks the name at once or records that this process holds it (so nothing can leak).
    """
    name, size, stream_len, spans, capacity, token = pickle.loads(payload)
    try:
        shm = posix_ipc.SharedMemory(_path(name))
    except posix_ipc.ExistentialError:
        # a consumer died after taking it: the item went with it
        _tracker.release_hold("shm", name, token)
        return None
    fd = os.dup(shm.fd)
    shm.close_fd()
    return Opened(name, fd, size, stream_len, spans, capacity, token)


def load(opened: Opened) -> Any:
    """Map a taken item and unpickle it; large buffers stay in the mapping (no copy)."""
    opened.adopt()
    try:
        mm = mmap.mmap(opened.fd, opened.size)
    except BaseException:
        if opened.on_release is not None:
            opened.on_release()
        raise
    finally:
        opened.close()
    if opened.on_release is not None:
        weakref.finalize(mm, opened.on_release)
    view = memoryview(mm)
    buffers = [view[off : off + length] for off, length in opened.spans]
    return pickle.loads(view[: opened.stream_len], buffers=buffers)
