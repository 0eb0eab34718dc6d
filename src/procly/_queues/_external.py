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

* the consumer that takes the descriptor, while it holds the queue's lock (see
  :mod:`procly._queues._ring`), so a consumer killed at any moment leaks nothing;
* a producer whose ``put`` fails (timeout, full) unlinks its own segment;
* a producer killed between creating the segment and publishing it: its name sits in the
  queue's *pending* table with its pid, and the next process that finds the pid dead (lock
  recovery, or the queue's final cleanup) unlinks it;
* descriptors still queued when the queue's creator finalizes it are unlinked then.
"""

from __future__ import annotations

import mmap
import os
import pickle
from collections.abc import Sequence
from typing import Any

import posix_ipc

__all__ = ("Opened", "load", "open_segment", "unlink", "unlink_payload", "write")

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


def write(name: str, stream: bytes, buffers: Sequence[memoryview]) -> bytes:
    """Create segment *name* holding *stream* and *buffers*; return the descriptor payload.

    Raises :class:`OSError` (``ENOSPC`` when ``/dev/shm`` is full); the segment is then
    unlinked again.
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
    shm = posix_ipc.SharedMemory(_path(name), posix_ipc.O_CREX, mode=0o600, size=0)
    try:
        _write_all(shm.fd, pieces)
    except BaseException:
        unlink(name)
        raise
    finally:
        shm.close_fd()
    return pickle.dumps((name, offset, len(stream), spans), pickle.HIGHEST_PROTOCOL)


class Opened:
    """A taken big item: an open descriptor of its (already unlinked) segment."""

    __slots__ = ("fd", "size", "spans", "stream_len")

    def __init__(self, fd: int, size: int, stream_len: int, spans: list[tuple[int, int]]) -> None:
        self.fd = fd
        self.size = size
        self.stream_len = stream_len
        self.spans = spans

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def unlink_payload(payload: bytes | bytearray | memoryview) -> None:
    """Unlink the segment a descriptor names (cleanup of items nobody will take)."""
    unlink(pickle.loads(payload)[0])


def open_segment(payload: bytes | bytearray | memoryview) -> Opened | None:
    """Open and unlink the segment described by *payload*; None if it is gone already.

    Called under the queue's lock, before the record is consumed: afterwards the open
    descriptor is the only thing keeping the memory, so nothing can leak.
    """
    name, size, stream_len, spans = pickle.loads(payload)
    try:
        shm = posix_ipc.SharedMemory(_path(name))
    except posix_ipc.ExistentialError:
        return None  # a consumer died after unlinking it: the item went with it
    unlink(name)
    fd = os.dup(shm.fd)
    shm.close_fd()
    return Opened(fd, size, stream_len, spans)


def load(opened: Opened) -> Any:
    """Map a taken item and unpickle it; large buffers stay in the mapping (no copy)."""
    try:
        mm = mmap.mmap(opened.fd, opened.size)
    finally:
        opened.close()
    view = memoryview(mm)
    buffers = [view[off : off + length] for off, length in opened.spans]
    return pickle.loads(view[: opened.stream_len], buffers=buffers)
