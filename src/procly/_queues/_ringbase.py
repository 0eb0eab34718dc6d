"""The state and mechanics under :class:`~procly._queues._ring.Ring` (layer 2): the
shared segment's layout, creation, locking with crash recovery, room and growth, and the
futex waiting protocol.  The data flow and the crash-safety argument are in
:mod:`procly._queues._ring`'s header; the operations built on this are there too.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import posix_ipc

from .._os._names import new_name
from .._proc import _tracker
from . import _native, _segments

__all__ = ("EXTERNAL", "INITIAL_CAPACITY", "INLINE", "MAX_CAPACITY", "RingBase")

_R = TypeVar("_R", bound="RingBase")

# -- layout ------------------------------------------------------------------------------
_SEQ_OFF = 64  # three u32 futex words: not-empty, not-full, tasks-done
_SEQ_NE, _SEQ_NF, _SEQ_TD = 0, 1, 2
_H_OFF = 128  # u64 words:
(_MAGIC, _CAP, _HEAD, _TAIL, _COUNT, _MAXSIZE, _WAIT_GET, _WAIT_PUT, _WAIT_JOIN, _UNFINISHED,
 _WRAP_AT, _J_MASK, _J_TAIL, _J_CAP, _J_UNF, _OWNER_PID, _PEND_GET, _PEND_PUT,
 _PEND_TD, _UNUSED) = range(20)
_H_WORDS = 24
_M_TAIL, _M_CAP, _M_UNF = 1, 2, 4  # journal mask bits
# bytes 1024..4095: the big-item tables (see _segments)
_DATA_OFF = 4096

_MAGIC_VALUE = 0x70726F636C79_5131  # "procly" "Q1"
#: Virtual size of the data area; only the used part is ever backed by memory.
MAX_CAPACITY = 1 << 30
INITIAL_CAPACITY = 1 << 20

INLINE, EXTERNAL, _WRAP, _SKIP = 1, 2, 3, 4
_U32 = 0xFFFFFFFF
#: Longest single sleep: bounds the cost of a waker that died between commit and wake.
_SLICE_S = 1.0
#: Polls of the header before a waiter goes to sleep (about 10-20 us).
_SPIN = 200
#: Further polls, each after giving the CPU away: when the machine is oversubscribed the
#: process we wait for may need *this* CPU to make progress.
_YIELDS = 20

_lock = _native.lock
_lock_slow = _native.lock_slow
_unlock = _native.unlock
# The hot paths' trylock/unlock: the C extension's (an int address, ~40 ns a call) when it
# was built, else the bare ctypes functions (a c_void_p, ~200 ns).  ``RingBase._mfast`` is
# the matching argument.
_trylock_c: Any
_unlock_c: Any
try:
    from .._os import _native as _c_ext  # (module form: the import linter cannot see a .so)

    _trylock_c, _unlock_c = _c_ext.mutex_trylock, _c_ext.mutex_unlock

    _FAST_INT = True
except ImportError:  # pragma: no cover - the C extension is optional
    _trylock_c, _unlock_c = _native.raw_functions() if _native.available() else (None, None)
    _FAST_INT = False


def _poll(h: memoryview, watch: int, observed: int) -> bool:
    """Poll header word *watch* without the lock until it differs from *observed*: True
    if it changed (about 10-50 us at most; a racy read that callers recheck)."""
    for _ in range(_SPIN):
        if h[watch] != observed:
            return True
    for _ in range(_YIELDS):
        os.sched_yield()
        if h[watch] != observed:
            return True
    return False


def _record_size(length: int) -> int:
    return 8 + ((length + 7) & ~7)


class RingBase:
    """One attachment of this process to a queue's shared segment: the mechanics.

    Safe to use from several threads at once: all state lives in shared memory behind the
    robust mutex.
    """

    __slots__ = ("__weakref__", "_anchor", "_data", "_deferred", "_dq", "_h", "_maxsize", "_mfast",
                 "_mm", "_mutex", "_seq", "_seq_addr", "_table", "name")

    def __init__(self, name: str, mm: mmap.mmap) -> None:
        self.name = name
        self._mm = mm
        self._anchor = ctypes.c_char.from_buffer(mm)  # keeps the mutex address valid
        base = ctypes.addressof(self._anchor)
        self._mutex = ctypes.c_void_p(base)
        self._mfast: Any = base if _FAST_INT else self._mutex  # for _trylock_c/_unlock_c
        self._seq_addr = base + _SEQ_OFF
        view = memoryview(mm)
        self._seq = view[_SEQ_OFF : _SEQ_OFF + 12].cast("I")
        self._h = view[_H_OFF : _H_OFF + 8 * _H_WORDS].cast("Q")
        self._data = view[_DATA_OFF:]
        self._dq = self._data.cast("Q")
        self._maxsize = 0  # immutable once created; cached by create/attach
        self._table = _segments.SegmentTable(view)
        # segments given back while the lock could not be taken (see give_back)
        self._deferred: list[tuple[str, int, int, int, str]] = []

    # -- creation ------------------------------------------------------------------------

    @classmethod
    def create(cls: type[_R], maxsize: int, capacity: int = INITIAL_CAPACITY) -> _R:
        """Create a fresh queue segment; the caller holds one tracker use of its name.

        Raises :class:`OSError` if shared memory cannot be created or mapped.
        """
        if not _native.available():
            raise OSError("procly queues need Linux futexes and robust mutexes")
        name = new_name("q")
        size = _DATA_OFF + MAX_CAPACITY
        shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o600, size=size)
        try:
            mm = mmap.mmap(shm.fd, size)
        except BaseException:
            shm.unlink()
            raise
        finally:
            shm.close_fd()
        # Reference counted: this is the creator's use; every process using the queue holds
        # one, and the tracker reclaims the name once none is left (see _queue).
        _tracker.register("shm", name, pin=False)
        ring = cls(name, mm)
        _native.mutex_init(ring._mutex)
        h = ring._h
        h[_CAP] = capacity
        h[_MAXSIZE] = maxsize
        h[_OWNER_PID] = os.getpid()
        h[_MAGIC] = _MAGIC_VALUE
        ring._maxsize = maxsize
        return ring

    @classmethod
    def attach(cls: type[_R], name: str) -> _R:
        """Map an existing queue segment by name.

        Raises :class:`FileNotFoundError` if the queue was already reclaimed (no user left).
        """
        try:
            shm = posix_ipc.SharedMemory("/" + name)
        except posix_ipc.ExistentialError:
            raise FileNotFoundError(f"queue segment {name!r} no longer exists") from None
        try:
            mm = mmap.mmap(shm.fd, shm.size)
        finally:
            shm.close_fd()
        ring = cls(name, mm)
        if ring._h[_MAGIC] != _MAGIC_VALUE:
            raise OSError(f"{name!r} is not a procly queue segment")
        ring._maxsize = int(ring._h[_MAXSIZE])
        return ring

    # -- locking and recovery --------------------------------------------------------------

    def _acquire(self) -> None:
        rc = _trylock_c(self._mfast)
        if rc and _lock_slow(self._mutex, rc):
            self._recover()

    def _recover(self) -> None:
        """Repair what a lock owner that died may have left (called with the lock held)."""
        h = self._h
        mask = h[_J_MASK]
        if mask:  # replay the journal: its values are absolute, replaying twice is fine
            if mask & _M_CAP:
                h[_CAP] = h[_J_CAP]
            if mask & _M_TAIL:
                h[_TAIL] = h[_J_TAIL]
            if mask & _M_UNF:
                h[_UNFINISHED] = h[_J_UNF]
            h[_J_MASK] = 0
        h[_PEND_GET] = h[_PEND_PUT] = h[_PEND_TD] = 0
        h[_COUNT] = self._walk(lambda kind, payload: None)
        self._table.reap_dead()
        for i in (_SEQ_NE, _SEQ_NF, _SEQ_TD):  # whoever the dead owner was to wake: wake all
            self._seq[i] = (self._seq[i] + 1) & _U32
            _native.futex_wake(self._seq_addr + 4 * i, 1 << 30)

    def _walk(self, visit: Callable[[int, memoryview], None]) -> int:
        """Visit every published record (with the lock held); return how many there are."""
        h, dq, data = self._h, self._dq, self._data
        pos, tail, cap, count = h[_HEAD], h[_TAIL], h[_CAP], 0
        while pos != tail:
            if pos == cap:
                pos = 0
                continue
            word = dq[pos >> 3]
            length, kind = word & _U32, word >> 32
            if kind == _WRAP:
                pos = 0
            elif kind == _SKIP:
                pos += 8 + length
            else:
                visit(kind, data[pos + 8 : pos + 8 + length])
                pos += _record_size(length)
                count += 1
        return count

    # -- space -----------------------------------------------------------------------------

    def _reserve(self, need: int) -> int:
        """Offset where *need* contiguous bytes fit, or -1 (lock held; may write a WRAP)."""
        h = self._h
        cap, head, tail = h[_CAP], h[_HEAD], h[_TAIL]
        if tail >= head:  # not wrapped (or empty): free space is [tail, cap) and [0, head)
            if tail + need <= cap:
                return tail
            if need < head:  # strictly: TAIL never catches up with HEAD (== means empty)
                if tail < cap:
                    self._dq[tail >> 3] = _WRAP << 32
                h[_WRAP_AT] = tail
                return 0
            return -1
        return tail if tail + need < head else -1

    def _grow(self, need: int) -> bool:
        """Double CAP until *need* more bytes fit; False at :data:`MAX_CAPACITY` (lock held)."""
        h = self._h
        cap, head, tail = h[_CAP], h[_HEAD], h[_TAIL]
        used = tail - head if tail >= head else (cap - head) + tail
        new_cap = cap
        while new_cap < used + 2 * need + 16:
            new_cap *= 2
        if new_cap > MAX_CAPACITY:
            return False
        if tail >= head:
            h[_CAP] = new_cap  # one store: the ring simply got longer
            return True
        # Wrapped: move [0, TAIL) to [CAP, CAP + TAIL) and turn the wrap point into a SKIP
        # to CAP, then switch CAP and TAIL together through the journal.
        data = self._data
        data[cap : cap + tail] = data[0:tail]
        wrap_at = h[_WRAP_AT]
        if wrap_at < cap:
            self._dq[wrap_at >> 3] = (cap - wrap_at - 8) | (_SKIP << 32)
        h[_J_CAP] = new_cap
        h[_J_TAIL] = cap + tail
        h[_J_MASK] = _M_CAP | _M_TAIL
        h[_CAP] = new_cap
        h[_TAIL] = cap + tail
        h[_J_MASK] = 0
        return True

    # -- waiting ---------------------------------------------------------------------------

    def _wait(self, seq: int, counter: int, pend: int, deadline: float | None, watch: int) -> bool:
        """Sleep until woken on *seq* (lock held on entry and exit); False once past *deadline*.

        Spins briefly first, without the lock, for header word *watch* to change: on a
        busy queue the other side usually acts within microseconds, and a futex sleep plus
        wake costs both sides a system call and a context switch.  Once awake, clears the
        *pend* flag (see :meth:`_signal`) so that the next event wakes someone again.
        """
        h = self._h
        observed = h[watch]
        _unlock_c(self._mfast)
        _poll(h, watch, observed)
        self._acquire()
        if h[watch] != observed:
            return True
        if deadline is None:
            timeout = _SLICE_S
        else:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return False
            timeout = min(timeout, _SLICE_S)
        h[counter] += 1
        expected = self._seq[seq]
        _unlock_c(self._mfast)
        try:
            _native.futex_wait(self._seq_addr + 4 * seq, expected, timeout)
        finally:
            self._acquire()
            if h[counter]:
                h[counter] -= 1
            h[pend] = 0
        return True

    def _signal(self, seq: int, counter: int, pend: int) -> int:
        """Bump *seq* if someone sleeps on it and no wake is already on its way; return how
        many sleep (0: no wake needed).  Lock held.

        Without the *pend* flag a producer would pay a futex system call on every put
        between waking a consumer and that consumer running again.
        """
        h = self._h
        waiters = h[counter]
        if not waiters or h[pend]:
            return 0
        h[pend] = 1
        self._seq[seq] = (self._seq[seq] + 1) & _U32
        return int(waiters)

    def _bump(self, seq: int) -> None:
        self._seq[seq] = (self._seq[seq] + 1) & _U32

    # -- introspection and teardown ---------------------------------------------------------------

    def count(self) -> int:
        """Items in the queue now (a snapshot, exact at the moment of reading)."""
        return int(self._h[_COUNT])

    def maxsize(self) -> int:
        return int(self._h[_MAXSIZE])

    def unfinished(self) -> int:
        return int(self._h[_UNFINISHED])

    def capacity(self) -> int:
        return int(self._h[_CAP])
