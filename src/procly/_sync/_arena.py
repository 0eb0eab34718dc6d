"""Shared 64-bit words for the state of locks, events and barriers (layer 2).

A named semaphore carries only a counter.  The owner of a lock, the flag of an event and
the state of a barrier live in *slots* of eight signed 64-bit words, carved out of
anonymous shared *arenas* (a ``memfd`` of 64 KiB, 1024 slots)::

    creating process                                   child process
    +-------------------------------------+            +----------------------------+
    | _Registry (one per process)         |            | _Registry                  |
    |   current arena -> allocate/free    |  fork:     |   arenas by uid (adopted)  |
    |   arenas by uid                     |  inherits  |   never allocates from an  |
    |  +-------------------------------+  |  mapping   |   inherited/adopted arena  |
    |  | Arena: memfd + MAP_SHARED map |==|===========>|  Arena (same memory)       |
    |  |  slot 0 | slot 1 | ...        |  |  spawn /   |                            |
    |  +-------------------------------+  |  forkserver: fd inside the pickle       |
    +-------------------------------------+  (procly._serial._fdpass), dup'ed by uid |
                                                       +----------------------------+

* **The creating process** allocates slots from its *current* arena and gives a slot back
  for reuse only if it can prove no other process can see it: never pickled and no
  ``fork`` since it was allocated (``generation``).  Otherwise the 64 bytes stay
  allocated for the life of the arena, which the kernel frees with the last process that
  maps it: nothing can leak past the process tree, and there is no name to unlink.
* **A child** adopts an arena the first time a pickle brings its descriptor, and reuses it
  (closing the duplicate descriptor) for every later slot of the same arena.  After
  ``fork`` a child never allocates from inherited arenas: the parent still does.
* **Repairs** of a lock whose holder died are serialised across processes with a POSIX
  record lock on the slot's bytes (released by the kernel if the repairer dies) and across
  threads with :attr:`Arena.guard`.  POSIX record locks vanish when *any* descriptor of the
  file is closed, so closing a duplicate descriptor also takes the guard.
"""

from __future__ import annotations

import collections
import mmap
import os
import secrets
import threading
from typing import Any

from .._os._reentry import Section
from .._serial._fdpass import reduce_fd

__all__ = ("REGISTRY", "SLOT_WORDS", "Arena", "Slot")

SLOT_WORDS = 8
SLOT_BYTES = SLOT_WORDS * 8
ARENA_SLOTS = 1024
ARENA_BYTES = SLOT_BYTES * ARENA_SLOTS


def _anonymous_fd(size: int) -> int:
    """A descriptor of *size* bytes of shared memory with no name at all."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("procly-sync", os.MFD_CLOEXEC)
    else:  # pragma: no cover - macOS: a POSIX segment whose name is unlinked at once
        import posix_ipc

        from .._os._names import new_name

        seg = posix_ipc.SharedMemory("/" + new_name("a"), posix_ipc.O_CREX, mode=0o600)
        seg.unlink()
        fd = os.dup(seg.fd)
        seg.close_fd()
        os.set_inheritable(fd, False)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _FdRef:
    """Pickles as the descriptor itself (the transport carries it, see ``_fdpass``)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return reduce_fd(self.fd, "a procly synchronization primitive")


class Arena:
    """One shared mapping of :data:`ARENA_SLOTS` slots."""

    def __init__(self, uid: str, fd: int) -> None:
        self.uid = uid
        self.fd = fd
        self.map = mmap.mmap(fd, ARENA_BYTES)
        self.words = memoryview(self.map).cast("q")
        self.guard = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_adopt, (self.uid, _FdRef(self.fd)))


class Slot:
    """Eight shared words; ``words`` is a ``memoryview`` of format ``'q'``."""

    __slots__ = ("arena", "generation", "index", "shared", "words")

    def __init__(self, arena: Arena, index: int, generation: int, shared: bool) -> None:
        self.arena = arena
        self.index = index
        self.words = arena.words[index * SLOT_WORDS : (index + 1) * SLOT_WORDS]
        self.generation = generation
        self.shared = shared

    @property
    def offset(self) -> int:
        """Byte offset of the slot in its arena (for record locks)."""
        return self.index * SLOT_BYTES

    def __reduce__(self) -> tuple[Any, ...]:
        self.shared = True  # another process may use it from now on: never reuse it
        return (_rebuild_slot, (self.arena, self.index))


class _Registry:
    """Every arena this process knows (the module's one state object).

    :meth:`_after_fork_in_child` is the documented reset; it runs in each forked child.
    """

    def __init__(self) -> None:
        # A primitive's finalizer can run on the very thread inside ``self.section`` (a
        # garbage collection during allocate); its release then waits in ``deferred`` for
        # the next allocate instead of deadlocking (see procly._os._reentry).
        self.section = Section()
        self.deferred: collections.deque[Slot] = collections.deque()
        self.arenas: dict[str, Arena] = {}
        self.current: Arena | None = None
        self.next_index = 0
        self.free: list[int] = []
        self.generation = 0

    def allocate(self) -> Slot:
        with self.section:
            while self.deferred:
                self._release_locked(self.deferred.popleft())
            return self._allocate_locked()

    def _allocate_locked(self) -> Slot:
        if self.free:
            index = self.free.pop()
        else:
            if self.current is None or self.next_index >= ARENA_SLOTS:
                arena = Arena(secrets.token_hex(8), _anonymous_fd(ARENA_BYTES))
                self.arenas[arena.uid] = arena
                self.current = arena
                self.next_index = 0
            index = self.next_index
            self.next_index += 1
        assert self.current is not None
        return Slot(self.current, index, self.generation, shared=False)

    def release(self, slot: Slot) -> None:
        """Give *slot* back if no other process can possibly use it."""
        if not self.section.enter():  # a finalizer interrupting allocate: see deferred
            self.deferred.append(slot)
            return
        try:
            self._release_locked(slot)
        finally:
            self.section.leave()

    def _release_locked(self, slot: Slot) -> None:
        if slot.shared or slot.generation != self.generation or slot.arena is not self.current:
            return
        for i in range(SLOT_WORDS):
            slot.words[i] = 0
        self.free.append(slot.index)

    def adopt(self, uid: str, fd: int) -> Arena:
        with self.section:
            known = self.arenas.get(uid)
            if known is None:
                arena = Arena(uid, fd)
                self.arenas[uid] = arena
                return arena
        with known.guard:  # closing any descriptor drops our record locks on the file
            os.close(fd)
        return known

    def _after_fork_in_parent(self) -> None:
        self.generation += 1

    def _after_fork_in_child(self) -> None:
        self.section = Section()
        self.deferred.clear()
        self.current = None
        self.next_index = 0
        self.free = []
        self.generation += 1
        for arena in self.arenas.values():
            arena.guard = threading.Lock()


REGISTRY = _Registry()
os.register_at_fork(
    after_in_parent=REGISTRY._after_fork_in_parent,
    after_in_child=REGISTRY._after_fork_in_child,
)


def _adopt(uid: str, fd: int) -> Arena:
    return REGISTRY.adopt(uid, fd)


def _rebuild_slot(arena: Arena, index: int) -> Slot:
    return Slot(arena, index, REGISTRY.generation, shared=True)
