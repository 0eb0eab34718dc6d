"""The shared ring every procly queue is made of (layer 2).

Data flow (no feeder thread, no pipe: a ``put`` returns once the item *is in the queue*)::

    producer processes / threads                 consumer processes / threads
    +-----------------------+                    +-----------------------+
    | put / put_many        |                    | get / get_many        |
    |  pickle (outside lock)|                    |  copy record out under|
    |  lock; write records; |                    |  the lock; unpickle   |
    |  commit TAIL; unlock; |                    |  after unlocking      |
    |  futex-wake getters   |                    |  futex-wake putters   |
    +-----------+-----------+                    +-----------+-----------+
                |                                            ^
                v          one shared-memory segment         |
    +-----------------------------------------------------------------------+
    | header page: robust mutex | 3 futex sequence words (not-empty,        |
    |   not-full, tasks-done) | CAP HEAD TAIL COUNT MAXSIZE waiter counts   |
    |   UNFINISHED WRAP_AT | redo journal | pending + spare segment tables  |
    +-----------------------------------------------------------------------+
    | data: [len|kind][pickle]... ring of 8-aligned records, HEAD..TAIL     |
    |   kinds: INLINE pickle, EXTERNAL descriptor (see _external),          |
    |   WRAP (continue at 0), SKIP (jump over a relocated gap)              |
    +-----------------------------------------------------------------------+
                |  EXTERNAL records name one segment per big item
                v
          /dev/shm/<prefix>-i-...   (held by the consumer while its object maps it,
                                     then kept as a spare for refilling, or unlinked)

* **A producer** pickles outside the lock, then under the lock finds room (growing the ring
  if needed), writes its records past TAIL, and publishes them with *one* store to TAIL.
  It wakes sleeping consumers after unlocking.
* **A consumer** reads records from HEAD under the lock, copies their bytes out, publishes
  the new HEAD with one store, unlocks and only then unpickles (so user ``__setstate__``
  code never runs under the lock).
* **Waiters** (empty queue, full queue, ``JoinableQueue.join``) first poll the header
  briefly without the lock, then count themselves in the header and sleep on a futex word
  that wakers bump under the lock: no lost wakeups.  A waker wakes only when no earlier
  wake is still pending, and a woken getter that leaves items passes the wake on.

Crash safety (a process SIGKILLed at any instruction):

* The lock is a robust mutex: the next locker learns the owner died and calls
  :meth:`Ring._recover` before touching anything.
* Records are written past TAIL and published by one aligned 8-byte store, so a half-written
  record is simply never published; a consumer copies a record *before* storing HEAD, so it
  either took the item or left it.  COUNT is recomputed by walking HEAD..TAIL on recovery.
* Updates of several words (growing the ring, ``JoinableQueue`` puts that also count an
  unfinished task) go through a small redo journal that recovery replays.
* A sleeping waiter that dies leaves only an over-count of waiters: extra wakes, harmless;
  sleeps are sliced, so a waker that died before waking costs at most one slice.
* Big items: every segment is named in the header's pending table (with the pid filling or
  holding it) or spare table until it is unlinked; dead pids are reaped (see _segments).
  Should every holder die, nobody is left to reap: the resource tracker owns every segment
  too, and unlinks it once nothing references it or, for one still queued or spare, once
  the queue has no user left (see _external).

The data area is a sparse mapping of :data:`MAX_CAPACITY` bytes of which only the first CAP
are used (pages are touched only when used); CAP doubles when a put does not fit, which is
why a ``Queue(maxsize=0)`` never blocks, like the standard library's.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Sequence
from typing import Any

from .._proc import _tracker
from . import _external, _native, _segments
from ._ringbase import _CAP as _CAP
from ._ringbase import _COUNT as _COUNT
from ._ringbase import _DATA_OFF as _DATA_OFF
from ._ringbase import _HEAD as _HEAD
from ._ringbase import _J_MASK as _J_MASK
from ._ringbase import _J_TAIL as _J_TAIL
from ._ringbase import _J_UNF as _J_UNF
from ._ringbase import _M_TAIL as _M_TAIL
from ._ringbase import _M_UNF as _M_UNF
from ._ringbase import _PEND_GET as _PEND_GET
from ._ringbase import _PEND_PUT as _PEND_PUT
from ._ringbase import _PEND_TD as _PEND_TD
from ._ringbase import _SEQ_NE as _SEQ_NE
from ._ringbase import _SEQ_NF as _SEQ_NF
from ._ringbase import _SEQ_TD as _SEQ_TD
from ._ringbase import _SKIP as _SKIP
from ._ringbase import _TAIL as _TAIL
from ._ringbase import _U32 as _U32
from ._ringbase import _UNFINISHED as _UNFINISHED
from ._ringbase import _WAIT_GET as _WAIT_GET
from ._ringbase import _WAIT_JOIN as _WAIT_JOIN
from ._ringbase import _WAIT_PUT as _WAIT_PUT
from ._ringbase import _WRAP as _WRAP
from ._ringbase import EXTERNAL as EXTERNAL
from ._ringbase import INITIAL_CAPACITY as INITIAL_CAPACITY
from ._ringbase import INLINE as INLINE
from ._ringbase import MAX_CAPACITY as MAX_CAPACITY
from ._ringbase import RingBase, _lock_slow, _poll, _trylock_c, _unlock_c
from ._ringbase import _record_size as _record_size

__all__ = ("EXTERNAL", "INLINE", "Ring")


class Ring(RingBase):
    """One attachment of this process to a queue's shared segment: the operations.

    Safe to use from several threads at once: all state lives in shared memory behind the
    robust mutex.
    """

    __slots__ = ()

    # -- the operations ----------------------------------------------------------------------

    def _room(self, need: int, n: int, deadline: float | None, block: bool) -> int:
        """Offset of *need* free contiguous bytes for *n* more items, waiting for them if
        *block*; -1 if none came in time (lock held on entry and exit)."""
        h, maxsize = self._h, self._maxsize
        while True:
            if maxsize and h[_COUNT] + n > maxsize:
                off = -1
            else:
                off = self._reserve(need)
                if off < 0 and self._grow(need):
                    off = self._reserve(need)
            if off >= 0:
                return off
            if not block or not self._wait(_SEQ_NF, _WAIT_PUT, _PEND_PUT, deadline, _HEAD):
                return -1

    def _commit_put(self, end: int, n: int, joinable: bool) -> int:
        """Publish records ending at *end*; return the number of getters to wake."""
        h = self._h
        if joinable:
            h[_J_UNF] = h[_UNFINISHED] + n
            h[_J_TAIL] = end
            h[_J_MASK] = _M_TAIL | _M_UNF
            h[_UNFINISHED] = h[_J_UNF]
            h[_TAIL] = end
            h[_J_MASK] = 0
        else:
            h[_TAIL] = end  # the commit
        h[_COUNT] += n
        return self._signal(_SEQ_NE, _WAIT_GET, _PEND_GET)

    def put_one(self, payload: bytes, kind: int, deadline: float | None, block: bool, joinable: bool) -> bool:
        """Append one record; False if there was no room in time (see :meth:`put`)."""
        length = len(payload)
        need = 8 + ((length + 7) & ~7)
        h, mutex, fast = self._h, self._mutex, self._mfast
        rc = _trylock_c(fast)
        if rc and _lock_slow(mutex, rc):
            self._recover()
        try:
            off = h[_TAIL]
            if self._maxsize or not (off >= h[_HEAD] and off + need <= h[_CAP]):
                off = self._room(need, 1, deadline, block)
                if off < 0:
                    return False
            self._dq[off >> 3] = length | (kind << 32)
            start = _DATA_OFF + off + 8
            self._mm[start : start + length] = payload
            if joinable:
                waiters = self._commit_put(off + need, 1, True)
            else:  # _commit_put inlined: this is the hottest path of all
                h[_TAIL] = off + need
                h[_COUNT] += 1
                waiters = self._signal(_SEQ_NE, _WAIT_GET, _PEND_GET) if h[_WAIT_GET] else 0
        finally:
            _unlock_c(fast)
        if waiters:
            _native.futex_wake(self._seq_addr + 4 * _SEQ_NE, 1)
        return True

    def put(
        self,
        payloads: Sequence[bytes],
        kinds: Sequence[int] | None,
        deadline: float | None,
        block: bool,
        joinable: bool,
        on_commit: Callable[[], None] | None = None,
    ) -> bool:
        """Append records atomically (all or none); False if there was no room in time.

        *kinds* None means all INLINE.  *deadline* is a :func:`time.monotonic` value or None
        (wait forever, when *block*).  *on_commit* runs under the lock right after the
        records are published.
        """
        n = len(payloads)
        need = 0
        for p in payloads:
            need += 8 + ((len(p) + 7) & ~7)
        self._acquire()
        try:
            off = self._room(need, n, deadline, block)
            if off < 0:
                return False
            dq, mm, pos = self._dq, self._mm, off
            for i, p in enumerate(payloads):
                length = len(p)
                dq[pos >> 3] = length | ((INLINE if kinds is None else kinds[i]) << 32)
                start = _DATA_OFF + pos + 8
                mm[start : start + length] = p
                pos += 8 + ((length + 7) & ~7)
            waiters = self._commit_put(pos, n, joinable)
            if on_commit is not None:
                on_commit()
        finally:
            _unlock_c(self._mfast)
        if waiters:
            _native.futex_wake(self._seq_addr + 4 * _SEQ_NE, min(n, waiters))
        return True

    def _take(self, max_items: int, take_external: Callable[[memoryview], Any]) -> tuple[list[tuple[int, Any]], int]:
        """Take up to *max_items* published records (lock held, at least one published).

        Returns the taken ``(kind, value)`` pairs and the number of putters to wake.
        """
        h, dq, mm, data = self._h, self._dq, self._mm, self._data
        pos, tail, cap = h[_HEAD], h[_TAIL], h[_CAP]
        out: list[tuple[int, Any]] = []
        taken = 0
        while taken < max_items and pos != tail:
            if pos == cap:
                pos = 0
                continue
            word = dq[pos >> 3]
            length, kind = word & _U32, word >> 32
            if kind == _WRAP:
                pos = 0
                continue
            if kind == _SKIP:
                pos += 8 + length
                continue
            start = _DATA_OFF + pos + 8
            if kind == INLINE:
                out.append((INLINE, mm[start : start + length]))
            else:
                value = take_external(data[pos + 8 : pos + 8 + length])
                if value is not None:  # None: its segment is gone, the item with it
                    out.append((kind, value))
            pos += 8 + ((length + 7) & ~7)
            taken += 1
        h[_HEAD] = pos  # the commit: these records are ours now
        h[_COUNT] -= taken
        return out, self._signal(_SEQ_NF, _WAIT_PUT, _PEND_PUT)

    def get_one(self) -> bytes | None:
        """The fast path of a single get: the pickled bytes of the oldest item if it is an
        ordinary one and nobody needs waking; otherwise None (nothing was taken: use
        :meth:`get`, which handles waiting, big items and wakeups)."""
        h, mutex, fast = self._h, self._mutex, self._mfast
        if h[_HEAD] == h[_TAIL] and not _poll(h, _TAIL, h[_TAIL]):
            return None  # still empty: the caller goes on to wait
        rc = _trylock_c(fast)
        if rc and _lock_slow(mutex, rc):
            self._recover()
        try:
            pos = h[_HEAD]
            if pos == h[_TAIL] or h[_WAIT_PUT]:
                return None
            word = self._dq[pos >> 3]
            if word >> 32 != INLINE:
                return None
            length = word & _U32
            start = _DATA_OFF + pos + 8
            data = self._mm[start : start + length]
            h[_HEAD] = pos + 8 + ((length + 7) & ~7)  # the commit
            h[_COUNT] -= 1
            return data
        finally:
            _unlock_c(fast)

    def get(
        self,
        max_items: int,
        deadline: float | None,
        block: bool,
        take_external: Callable[[memoryview], Any],
    ) -> list[tuple[int, Any]] | None:
        """Take up to *max_items* records (at least one); None if none came in time.

        Returns ``(kind, value)`` pairs: INLINE values are the pickled bytes; EXTERNAL
        values are whatever *take_external* (called under the lock with the descriptor)
        returned -- a None from it means the item is gone and is skipped.
        """
        h, mutex, fast = self._h, self._mutex, self._mfast
        if block and h[_HEAD] == h[_TAIL]:
            # Empty: poll without the lock first, so that an idle consumer does not make
            # the producer's lock acquisitions contend (a racy read; rechecked under lock).
            _poll(h, _TAIL, h[_TAIL])
        rc = _trylock_c(fast)
        if rc and _lock_slow(mutex, rc):
            self._recover()
        woken = False
        try:
            while True:
                pos = h[_HEAD]
                if pos == h[_TAIL]:
                    if not block or not self._wait(_SEQ_NE, _WAIT_GET, _PEND_GET, deadline, _TAIL):
                        return None
                    woken = True
                    continue
                word = self._dq[pos >> 3]
                if max_items == 1 and word >> 32 == INLINE:  # the common case, inlined
                    length = word & _U32
                    start = _DATA_OFF + pos + 8
                    out = [(INLINE, self._mm[start : start + length])]
                    h[_HEAD] = pos + 8 + ((length + 7) & ~7)
                    h[_COUNT] -= 1
                    waiters = self._signal(_SEQ_NF, _WAIT_PUT, _PEND_PUT) if h[_WAIT_PUT] else 0
                    break
                out, waiters = self._take(max_items, take_external)
                if out:
                    break
            # A woken getter that leaves items behind passes the wake on to the next
            # sleeper (producers do not wake while a wake is pending).
            chain = woken and h[_HEAD] != h[_TAIL] and self._signal(_SEQ_NE, _WAIT_GET, _PEND_GET)
        finally:
            _unlock_c(fast)
        if waiters:
            _native.futex_wake(self._seq_addr + 4 * _SEQ_NF, 1 << 30)
        if chain:
            _native.futex_wake(self._seq_addr + 4 * _SEQ_NE, 1)
        return out

    # -- JoinableQueue -------------------------------------------------------------------------

    def task_done(self) -> bool:
        """Count one finished task; False if none was unfinished (nothing changed)."""
        h = self._h
        self._acquire()
        try:
            unfinished = h[_UNFINISHED]
            if unfinished == 0:
                return False
            h[_UNFINISHED] = unfinished - 1
            waiters = h[_WAIT_JOIN] if unfinished == 1 else 0
            if waiters:
                self._bump(_SEQ_TD)
        finally:
            _unlock_c(self._mfast)
        if waiters:
            _native.futex_wake(self._seq_addr + 4 * _SEQ_TD, 1 << 30)
        return True

    def join(self, deadline: float | None) -> bool:
        """Wait until every put item was marked done; False if *deadline* passed first."""
        h = self._h
        self._acquire()
        try:
            while h[_UNFINISHED]:
                if not self._wait(_SEQ_TD, _WAIT_JOIN, _PEND_TD, deadline, _UNFINISHED):
                    return False
            return True
        finally:
            _unlock_c(self._mfast)

    # -- big items: the pending table ------------------------------------------------------------

    def add_pending(self, name: str) -> int:
        """Record that this process is about to create segment *name*; the slot or -1."""
        self._acquire()
        try:
            self._table.reap_dead()
            return self._table.add_pending(name)
        finally:
            _unlock_c(self._mfast)

    def clear_pending(self, slot: int) -> None:
        """Forget a pending slot (lock held: from :meth:`put`'s ``on_commit``)."""
        self._table.clear_pending(slot)

    def release_pending(self, slot: int) -> None:
        """Forget a pending slot, taking the lock."""
        if slot >= 0:
            self._acquire()
            try:
                self._table.clear_pending(slot)
            finally:
                _unlock_c(self._mfast)

    def lend_locked(self, name: str) -> int:
        """Record that this process now holds received segment *name* (lock held); the
        slot, or -1 if the table is full (then the caller unlinks the name at once)."""
        return self._table.add_pending(name)

    def take_spare(self, need: int) -> tuple[str, int, int, str] | None:
        """A spare segment of at least *need* bytes, now pending for this process:
        ``(name, capacity, slot, token)`` (*token*: the tracker hold that keeps it, now the
        caller's to pass on in the descriptor), or None."""
        self._acquire()
        try:
            self._drain_deferred()
            spare = self._table.take_spare(need)
            if spare is None:
                return None
            slot = self._table.add_pending(spare[0])
            return spare[0], spare[1], slot, spare[2]
        finally:
            _unlock_c(self._mfast)

    def give_back(self, name: str, capacity: int, slot: int, generation: int) -> None:
        """A received big item was garbage-collected: recycle or unlink its segment.

        Runs from a finalizer, possibly while this very thread holds the queue lock (a
        garbage collection inside a put): so it only *tries* the lock and otherwise
        defers the work to the next big put of this process.
        """
        # The spare's tracker hold is taken before the lock, to keep the lock short (a
        # producer may be waiting to refill this very segment); unused ones are released.
        token = ""
        if generation == _segments.fork_generation():
            try:
                # Tied to the queue: a spare goes when the queue's last user does (and the
                # hold is void if that already happened: then the release below frees it).
                token = _tracker.hold("shm", name, parent=self.name)
            except OSError:  # no tracker: no recycling (a spare must be held by it)
                token = ""
        entry = (name, capacity, slot, generation, token)
        for _ in range(64):
            rc = _trylock_c(self._mfast)
            if rc == 0 or rc == errno.EOWNERDEAD:
                break
        else:
            self._deferred.append(entry)
            return
        try:
            if rc:
                _native.make_consistent(self._mutex)
                self._recover()
            self._give_back_locked(entry)
        finally:
            _unlock_c(self._mfast)

    def _give_back_locked(self, entry: tuple[str, int, int, int, str]) -> None:
        name, capacity, slot, generation, token = entry
        mine = self._table.clear_pending(slot, name)
        if (
            token
            and mine
            and generation == _segments.fork_generation()
            and self._table.put_spare(name, capacity, token)
        ):
            # A spare has no user: the hold keeps it now, so our use can go (eagerly: if
            # the queue is already reclaimed the hold is void and the segment goes now).
            with contextlib.suppress(OSError):
                _tracker.release("shm", name)
            return
        _external.forget(name, use=True, token=token or None)

    def _drain_deferred(self) -> None:
        while self._deferred:
            self._give_back_locked(self._deferred.pop())
