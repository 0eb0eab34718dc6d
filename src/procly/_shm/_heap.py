"""Anonymous shared memory for shared ctypes: arenas cut into blocks (layer 2).

::

    parent                                  child (spawn / forkserver, or via a Connection)
    Heap --malloc--> Block(arena, off, n)    pickled Block = (arena fd via SCM_RIGHTS/pass_fds,
      arena = memfd + mmap(MAP_SHARED)          offset, size) --> mmap the same arena once
      |                                         (cached by inode), view [off, off+n)
      +-- fork: the child simply inherits every arena mapping

* **An arena** is an anonymous shared file (``memfd_create`` on Linux; elsewhere a POSIX
  segment unlinked at once) mapped ``MAP_SHARED``.  It has no name, so nothing can leak:
  the kernel frees it with its last mapping or descriptor, also after SIGKILL.  It crosses
  to another process only as a descriptor (:func:`procly._serial._fdpass.reduce_fd`): as a
  Process argument under every start method, or through a Connection over a Unix socket.
* **The heap** (one per process) cuts small allocations out of shared 1 MiB arenas, so a
  program making thousands of ``Value`` objects uses a handful of descriptors; a large
  allocation gets an arena of its own.  A block returns to its arena when the object that
  owns it is collected in the allocating process (as in the standard library, a child
  that still uses it then aliases whatever is allocated there next).
* **A receiver** maps a whole arena once, keyed by its inode, and shares that mapping
  among all the blocks it receives from it.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import mmap
import os
import threading
import weakref
from typing import Any

from .._os._reentry import Section
from .._serial._fdpass import reduce_fd

__all__ = ("Arena", "Block", "heap_malloc")

_ARENA_SIZE = 1 << 20
_ALIGN = 16
_PAGE = mmap.PAGESIZE


def _anon_fd(size: int) -> int:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("procly-heap", os.MFD_CLOEXEC)
    else:  # pragma: no cover - macOS: a POSIX segment that never keeps its name
        import posix_ipc  # type: ignore[import-not-found]

        from .._os._names import new_name

        name = "/" + new_name("h")
        seg = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600)
        posix_ipc.unlink_shared_memory(name)
        fd = int(seg.fd)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Arena:
    """One anonymous shared mapping and the descriptor that lets it travel."""

    def __init__(self, size: int, fd: int | None = None) -> None:
        self.size = size
        self.fd = _anon_fd(size) if fd is None else fd
        self.mmap = mmap.mmap(self.fd, size)
        st = os.fstat(self.fd)
        self.key = (st.st_dev, st.st_ino)
        self.pid = os.getpid()
        # free ranges as sorted (offset, length) lists, only in the allocating process
        self.free_offsets: list[int] = [0]
        self.free_lengths: list[int] = [size]
        self._closer = weakref.finalize(self, _close_arena, self.mmap, self.fd)

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_arena, (_FdBox(self.fd), self.size)

    # -- allocation (allocating process only) -----------------------------------------------
    def alloc(self, n: int) -> int | None:
        for i, length in enumerate(self.free_lengths):
            if length >= n:
                off = self.free_offsets[i]
                if length == n:
                    del self.free_offsets[i], self.free_lengths[i]
                else:
                    self.free_offsets[i] += n
                    self.free_lengths[i] -= n
                return off
        return None

    def free(self, off: int, n: int) -> None:
        i = bisect.bisect(self.free_offsets, off)
        self.free_offsets.insert(i, off)
        self.free_lengths.insert(i, n)
        # coalesce with the next, then the previous range
        if i + 1 < len(self.free_offsets) and off + n == self.free_offsets[i + 1]:
            self.free_lengths[i] += self.free_lengths.pop(i + 1)
            self.free_offsets.pop(i + 1)
        if i > 0 and self.free_offsets[i - 1] + self.free_lengths[i - 1] == off:
            self.free_lengths[i - 1] += self.free_lengths.pop(i)
            self.free_offsets.pop(i)

    @property
    def empty(self) -> bool:
        return self.free_lengths == [self.size]


def _close_arena(m: mmap.mmap, fd: int) -> None:
    with contextlib.suppress(Exception):
        m.close()  # fails with BufferError while views live: then the GC frees it later
    with contextlib.suppress(OSError):
        os.close(fd)


class _FdBox:
    """Pickles as the descriptor itself (the transport carries it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return reduce_fd(self.fd, "a shared ctypes object")


class _Received:
    """Arenas this process mapped from descriptors it received, by inode (one owner)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_key: weakref.WeakValueDictionary[tuple[int, int], Arena] = (
            weakref.WeakValueDictionary()
        )


_RECEIVED = _Received()


def _rebuild_arena(fd: int, size: int) -> Arena:
    st = os.fstat(fd)
    with _RECEIVED.lock:
        arena = _RECEIVED.by_key.get((st.st_dev, st.st_ino))
        if arena is not None:
            os.close(fd)
            return arena
        arena = Arena(size, fd)
        _RECEIVED.by_key[arena.key] = arena
        return arena


class Block:
    """``size`` bytes at ``offset`` in ``arena``; pickles as (arena descriptor, offset, size)."""

    __slots__ = ("__weakref__", "arena", "offset", "size")

    def __init__(self, arena: Arena, offset: int, size: int) -> None:
        self.arena = arena
        self.offset = offset
        self.size = size

    def view(self) -> memoryview:
        return memoryview(self.arena.mmap)[self.offset : self.offset + self.size]

    def __reduce__(self) -> tuple[Any, ...]:
        return Block, (self.arena, self.offset, self.size)


class _Heap:
    """This process's arenas and its lock (the one owner; reset after fork)."""

    def __init__(self) -> None:
        # A block's finalizer can run on the very thread inside ``self.section`` (a garbage
        # collection during malloc); its free then waits in ``deferred`` for the next malloc
        # or free instead of deadlocking (see procly._os._reentry).
        self.section = Section()
        self.deferred: collections.deque[tuple[Arena, int, int]] = collections.deque()
        self.arenas: list[Arena] = []
        self.pid = os.getpid()

    def after_fork_in_child(self) -> None:
        self.section = Section()  # another thread may have been inside at fork time
        self.deferred.clear()

    def _take_deferred(self) -> None:
        """Return blocks freed while a malloc was under way (call inside the section)."""
        while self.deferred:
            arena, off, n = self.deferred.popleft()
            arena.free(off, n)

    def malloc(self, size: int) -> Block:
        if size < 0:
            raise ValueError("size must be non-negative")
        n = max(_ALIGN, (size + _ALIGN - 1) // _ALIGN * _ALIGN)
        with self.section:
            return self._malloc_locked(size, n)

    def _malloc_locked(self, size: int, n: int) -> Block:
        if self.pid != os.getpid():  # a forked child allocates from arenas of its own
            self.arenas = []
            self.pid = os.getpid()
            self.deferred.clear()
        self._take_deferred()
        if n > _ARENA_SIZE // 4:  # large: an arena of its own, returned when freed
            arena = Arena((n + _PAGE - 1) // _PAGE * _PAGE)
            return Block(arena, 0, size)  # the arena dies with its only block
        for arena in self.arenas:
            off = arena.alloc(n)
            if off is not None:
                break
        else:
            arena = Arena(_ARENA_SIZE)
            self.arenas.append(arena)
            off = arena.alloc(n)
            assert off is not None
        block = Block(arena, off, size)
        weakref.finalize(block, self._free, arena, off, n)
        return block

    def _free(self, arena: Arena, off: int, n: int) -> None:
        if os.getpid() != arena.pid:
            return
        with contextlib.suppress(ValueError):  # mapping already closed at shutdown
            arena.mmap[off : off + n] = bytes(n)  # the next owner expects zeros
        if not self.section.enter():  # a finalizer interrupting malloc on this thread
            self.deferred.append((arena, off, n))
            return
        try:
            self._take_deferred()
            arena.free(off, n)
        finally:
            self.section.leave()


_HEAP = _Heap()
os.register_at_fork(after_in_child=_HEAP.after_fork_in_child)


def heap_malloc(size: int) -> Block:
    """A zero-filled block of *size* bytes of shared memory, freed when the block is
    collected in this process."""
    return _HEAP.malloc(size)
