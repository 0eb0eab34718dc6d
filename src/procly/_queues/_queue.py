"""Queue, JoinableQueue and SimpleQueue over one shared ring (layer 2).

Processes and threads involved (compare the standard library's feeder thread + pipe)::

    process A (creator)            process B, C ... (Process args / fork)
    +------------------+           +------------------+
    | Queue  --attach--+--+     +--+-- Queue (rebuilt |
    |  put: pickle,    |  |     |  |   from the name) |
    |  append record   |  v     v  |  get: take record|
    +------------------+  +-----+  +------------------+
                          | ring |  one shared segment (see _ring)
                          +--+--+
                             | big items: one segment each (see _external)

* **Every process** holding the queue maps the same segment; ``put`` writes the item into it
  before returning, ``get`` takes it out.  There is no feeder thread: nothing of the item
  stays in the putting process, which is why a child that put megabytes can exit at once
  and its parent's ``join()`` returns (the standard library's "joining processes that use
  queues" deadlock cannot happen), and why ``join_thread``/``cancel_join_thread`` have
  nothing left to do.
* **Every user** (the creator, a process that received the queue pickled, a forked child)
  counts as one use of the segment's name in the resource tracker, until it closes the
  queue, drops it or dies (SIGKILL included).  Once no process uses it the tracker unlinks
  the name and every big item still queued or kept spare (their tracker holds are tied to
  the queue's name): nothing is left in ``/dev/shm`` while the process tree lives on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import time
from collections.abc import Iterable
from queue import Empty, Full
from typing import Any

from .._os._names import new_name
from .._proc import (
    _process,  # noqa: F401 - installs the exit sequence that runs Finalize
    _tracker,
)
from .._proc._finalize import Finalize
from .._proc._spawning import assert_spawning
from .._serial._pickler import dumps_oob, loads
from . import _external
from ._ring import EXTERNAL, INLINE, Ring
from ._segments import fork_generation

__all__ = ("INLINE_MAX", "JoinableQueue", "Queue", "SimpleQueue")

_ATOMS = frozenset({int, float, bool, type(None)})
_pickle_dumps = pickle.dumps
_pickle_loads = pickle.loads
_PROTOCOL = pickle.HIGHEST_PROTOCOL

#: Pickles longer than this (and any item with out-of-band buffers) travel as big items.
INLINE_MAX = 256 * 1024


def _deadline(block: bool, timeout: float | None) -> float | None:
    if not block or timeout is None:
        return None
    return time.monotonic() + max(float(timeout), 0.0)


class _Lease:
    """One queue object's tracker *use* of its ring's name, released once per process (by
    :meth:`_RingQueue.close` or when the object is garbage-collected).  A forked child
    holds its own copy of the use (the tracker client re-registers inherited uses), which
    its copy of the lease releases."""

    __slots__ = ("done", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.done = 0  # the pid that released, 0 if none

    def release(self) -> None:
        pid = os.getpid()
        if self.done == pid:
            return
        self.done = pid
        # Eager: if this was the queue's last user, the tracker reclaims it (and its
        # undelivered big items) now, not when this process next talks to it.
        with contextlib.suppress(OSError):
            _tracker.release("shm", self.name)


def _load(kind: int, value: Any) -> Any:
    return loads(value) if kind == INLINE else _external.load(value)


def _load_all(records: list[tuple[int, Any]]) -> list[Any]:
    out: list[Any] = []
    try:
        for kind, value in records:
            out.append(_load(kind, value))
    finally:
        for kind, value in records[len(out) :]:  # an unpickling error: release the rest
            if kind == EXTERNAL:
                value.discard()
    return out


class _RingQueue:
    """What every procly queue shares: the ring, pickling and the close flag."""

    _joinable = False
    _ring: Ring
    _closed: bool
    _use: _Lease

    def _setup(self, maxsize: int) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        self._ring = Ring.create(max(maxsize, 0))
        self._closed = False
        self._lease(self._ring.name)

    def _lease(self, name: str) -> None:
        self._use = _Lease(name)
        Finalize(self, self._use.release)

    def __reduce__(self) -> tuple[Any, ...]:
        assert_spawning(self)
        # A hold keeps the queue alive while the pickle travels (the sender may drop its
        # queue first); the receiver releases it once it attached and counts as a user.
        name = self._ring.name
        return (_rebuild, (type(self), name, _tracker.hold("shm", name), _tracker.address()))

    def _closed_error(self) -> Exception:
        return ValueError(f"Queue {self!r} is closed")

    # -- putting ---------------------------------------------------------------------------

    def _write_big(self, stream: bytes, buffers: list[memoryview]) -> tuple[str, int, bytes, str]:
        """Put a big item into a segment (a spare one if it fits):
        ``(name, slot, payload, token)``.

        The segment is pending for this process until the descriptor is published, and kept
        by the tracker hold *token* (carried by the descriptor) once it is; see
        :mod:`._external` for the tracker protocol.
        """
        ring = self._ring
        spare = ring.take_spare(_external.layout_size(stream, buffers))
        if spare is not None:
            filled = self._refill(spare, stream, buffers)
            if filled is not None:
                return filled
        name = new_name("i")
        # Reference counted: our use keeps it while we fill it, the hold once published --
        # a hold that goes with the queue, should nobody take the item.
        _tracker.register("shm", name, pin=False)
        token = _tracker.hold("shm", name, parent=ring.name)
        slot = ring.add_pending(name)
        try:
            return name, slot, _external.write(name, stream, buffers, None, token), token
        except BaseException:
            ring.release_pending(slot)
            _external.forget(name, use=True, token=token)
            raise

    def _refill(
        self, spare: tuple[str, int, int, str], stream: bytes, buffers: list[memoryview]
    ) -> tuple[str, int, bytes, str] | None:
        """Write a big item into *spare* (from :meth:`Ring.take_spare`); None if the spare
        vanished meanwhile (the queue was reclaimed)."""
        ring = self._ring
        name, capacity, slot, token = spare
        try:
            payload = _external.write(name, stream, buffers, capacity, token)
        except FileExistsError:
            ring.release_pending(slot)
            _tracker.release_hold("shm", name, token)
            return None
        except BaseException:
            ring.release_pending(slot)
            _external.forget(name, token=token)
            raise
        return name, slot, payload, token

    def _take_big(self, payload: memoryview) -> _external.Opened | None:
        """Take a big item's segment (called under the queue lock by the ring)."""
        opened = _external.open_segment(payload)
        if opened is None:
            return None
        ring = self._ring
        slot = ring.lend_locked(opened.name)
        if slot < 0:  # no room to record that we hold it: unlink now, no recycling
            _external.forget(opened.name, token=opened.token)
            opened.token = None
        else:
            opened.on_release = functools.partial(
                ring.give_back, opened.name, opened.capacity, slot, fork_generation()
            )
        return opened

    def _put_big(self, stream: bytes, buffers: list[memoryview], block: bool, timeout: float | None) -> None:
        ring = self._ring
        name, slot, payload, token = self._write_big(stream, buffers)
        published = False
        try:
            published = ring.put(
                (payload,), (EXTERNAL,), _deadline(block, timeout), block, self._joinable,
                lambda: ring.clear_pending(slot),
            )
        finally:
            if not published:
                _external.forget(name, token=token)
                ring.release_pending(slot)
            _tracker.release("shm", name, lazy=True)  # our use, if any: the hold keeps it now
        if not published:
            raise Full

    def _put(self, obj: Any, block: bool, timeout: float | None) -> None:
        if self._closed:
            raise self._closed_error()
        if type(obj) in _ATOMS:  # dumps_oob's own fast case, without the call
            stream, buffers = _pickle_dumps(obj, _PROTOCOL), None
        else:
            stream, buffers = dumps_oob(obj)
            if buffers or len(stream) > INLINE_MAX:
                self._put_big(stream, buffers, block, timeout)
                return
        deadline = None if timeout is None or not block else _deadline(block, timeout)
        if not self._ring.put_one(stream, INLINE, deadline, block, self._joinable):
            raise Full

    def _put_many(self, items: Iterable[Any], block: bool, timeout: float | None) -> None:
        if self._closed:
            raise self._closed_error()
        objs = list(items)
        if not objs:
            return
        maxsize = self._ring.maxsize()
        if maxsize and len(objs) > maxsize:
            raise ValueError(f"put_many of {len(objs)} items can never fit a queue of maxsize {maxsize}")
        ring = self._ring
        payloads: list[bytes] = []
        kinds: list[int] = []
        big: list[tuple[str, int, str]] = []  # (name, pending slot, hold token)
        published = False
        try:
            for obj in objs:
                stream, buffers = dumps_oob(obj)
                if buffers or len(stream) > INLINE_MAX:
                    name, slot, payload, token = self._write_big(stream, buffers)
                    big.append((name, slot, token))
                    payloads.append(payload)
                    kinds.append(EXTERNAL)
                else:
                    payloads.append(stream)
                    kinds.append(INLINE)

            def clear() -> None:
                for _, slot, _ in big:
                    ring.clear_pending(slot)

            published = ring.put(
                payloads, kinds if big else None, _deadline(block, timeout), block,
                self._joinable, clear if big else None,
            )
        finally:
            for name, slot, token in big:
                if not published:
                    _external.forget(name, token=token)
                    ring.release_pending(slot)
                _tracker.release("shm", name, lazy=True)  # our use, if any
        if not published:
            raise Full

    # -- getting ---------------------------------------------------------------------------

    def _get(self, block: bool, timeout: float | None) -> Any:
        if self._closed:
            raise self._closed_error()
        deadline = None if timeout is None or not block else _deadline(block, timeout)
        records = self._ring.get(1, deadline, block, self._take_big)
        if records is None:
            raise Empty
        kind, value = records[0]
        return _pickle_loads(value) if kind == INLINE else _external.load(value)

    def _get_many(self, max_items: int | None, block: bool, timeout: float | None) -> list[Any]:
        if self._closed:
            raise self._closed_error()
        if max_items is None:
            max_items = 1 << 62
        elif isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_items must be a positive int, not {max_items!r}")
        records = self._ring.get(max_items, _deadline(block, timeout), block, self._take_big)
        if records is None:
            raise Empty
        return _load_all(records)

    # -- state -----------------------------------------------------------------------------

    def empty(self) -> bool:
        """Whether the queue held no item at the moment of the call (a snapshot)."""
        return self._ring.count() == 0

    def close(self) -> None:
        """Refuse further ``put``/``get`` in this process; other processes are unaffected.

        This process stops counting as a user of the queue: once no process uses it (each
        closed it, dropped it or died), its segment and its undelivered big items are freed.
        """
        self._closed = True
        self._use.release()


def _rebuild(cls: type[_RingQueue], name: str, token: str, tracker: str | None) -> _RingQueue:
    _tracker.adopt(tracker)
    try:
        self = cls.__new__(cls)
        self._ring = Ring.attach(name)
        self._closed = False
        _tracker.use("shm", name)
        self._lease(name)
        return self
    finally:
        _tracker.release_hold("shm", name, token)


class Queue(_RingQueue):
    """A process-shared FIFO queue (:class:`multiprocessing.Queue`).

    Differences from the standard library, all in the direction of fewer surprises:

    * ``put`` returns once the item is in shared memory, not in a feeder thread's buffer:
      a process may exit right after putting, with no join deadlock, and an item that
      cannot be pickled raises :class:`~procly.errors.SerializationError` in ``put`` itself.
    * ``qsize()`` works on every platform and is exact at the moment it is read.
    * ``put_many``/``get_many`` move many items per lock acquisition.
    * Items of any size; big ones (or ones with NumPy buffers) travel through a dedicated
      shared-memory segment and arrive without a copy.

    Raises :class:`queue.Full` / :class:`queue.Empty` exactly where the standard library
    does, :class:`ValueError` after :meth:`close`, :class:`TypeError` for a non-int
    *maxsize*.  *ctx* is accepted for compatibility and not needed.
    """

    def __init__(self, maxsize: int = 0, *, ctx: Any = None) -> None:
        self._setup(maxsize)

    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put *obj* into the queue; with a *maxsize*, wait for a free place (at most
        *timeout* seconds) and raise :class:`queue.Full` if none came, or at once if not
        *block*.  Raises :class:`ValueError` if the queue is closed and
        :class:`~procly.errors.SerializationError` if *obj* cannot be pickled."""
        if type(obj) in _ATOMS and timeout is None and not self._closed:  # _put, inlined
            if not self._ring.put_one(_pickle_dumps(obj, _PROTOCOL), INLINE, None, block, self._joinable):
                raise Full
            return
        self._put(obj, block, timeout)

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``."""
        self._put(obj, False, None)

    def put_many(self, items: Iterable[Any], block: bool = True, timeout: float | None = None) -> None:
        """Put all *items* atomically and contiguously, with one lock acquisition.

        With a *maxsize*, waits until all fit (raising :class:`queue.Full` as :meth:`put`
        does; then none was put); raises :class:`ValueError` if more items than *maxsize*
        are given, since they could never fit.
        """
        self._put_many(items, block, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item; wait at most *timeout* seconds for one and
        raise :class:`queue.Empty` if none came, or at once if not *block*.  Raises
        :class:`ValueError` if the queue is closed."""
        if block and not self._closed:  # _get's common case, inlined (it polls ~50 us at most)
            data = self._ring.get_one()
            if data is not None:
                return _pickle_loads(data)
        if timeout is None and not self._closed:
            records = self._ring.get(1, None, block, self._take_big)
            if records is None:
                raise Empty
            kind, value = records[0]
            return _pickle_loads(value) if kind == INLINE else _external.load(value)
        return self._get(block, timeout)

    def get_nowait(self) -> Any:
        """``get(False)``."""
        return self._get(False, None)

    def get_many(
        self, max_items: int | None = None, block: bool = True, timeout: float | None = None
    ) -> list[Any]:
        """Wait like :meth:`get` for at least one item, then return every available item, up
        to *max_items*, oldest first, taken with one lock acquisition.

        Raises :class:`queue.Empty` like :meth:`get`, and :class:`ValueError` for a
        *max_items* that is not a positive int.
        """
        return self._get_many(max_items, block, timeout)

    def qsize(self) -> int:
        """The number of items in the queue (exact when read; others may change it next)."""
        return self._ring.count()

    def full(self) -> bool:
        """Whether a *maxsize* is set and reached (a snapshot)."""
        maxsize = self._ring.maxsize()
        return bool(maxsize) and self._ring.count() >= maxsize

    def join_thread(self) -> None:
        """Compatibility: there is no feeder thread to join (items are in shared memory once
        ``put`` returns).  Like the standard library, only allowed after :meth:`close`
        (:class:`AssertionError` otherwise)."""
        if not self._closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self) -> None:
        """Compatibility: nothing to cancel, and unlike the standard library it cannot lose
        data -- items already put stay in the queue when this process exits."""


class JoinableQueue(Queue):
    """A :class:`Queue` that counts unfinished tasks (:class:`multiprocessing.JoinableQueue`).

    Every put item is one unfinished task until a consumer calls :meth:`task_done`;
    :meth:`join` waits until none is left.  The count lives in the shared segment and is
    updated together with the item (crash-safe: see :mod:`procly._queues._ring`).
    """

    _joinable = True

    def task_done(self) -> None:
        """Mark one task finished.  Raises :class:`ValueError` if called more times than
        items were put."""
        if self._closed:
            raise self._closed_error()
        if not self._ring.task_done():
            raise ValueError("task_done() called too many times")

    def join(self) -> None:
        """Block until every item ever put has been marked done by :meth:`task_done`."""
        self._ring.join(None)


class SimpleQueue(_RingQueue):
    """A simplified unbounded queue (:class:`multiprocessing.SimpleQueue`).

    Same ring as :class:`Queue`; after :meth:`close`, ``put``/``get`` raise
    :class:`OSError` as the standard library's closed pipe does.
    """

    def __init__(self, *, ctx: Any = None) -> None:
        self._setup(0)

    def _closed_error(self) -> Exception:
        return OSError("handle is closed")

    def put(self, obj: Any) -> None:
        """Put *obj*; never blocks.  Raises :class:`OSError` once closed."""
        self._put(obj, True, None)

    def get(self) -> Any:
        """Remove and return the oldest item, waiting as long as it takes.  Raises
        :class:`OSError` once closed."""
        if not self._closed:
            data = self._ring.get_one()
            if data is not None:
                return _pickle_loads(data)
        return self._get(True, None)

    def put_many(self, items: Iterable[Any]) -> None:
        """Put all *items* atomically with one lock acquisition."""
        self._put_many(items, True, None)

    def get_many(self, max_items: int | None = None) -> list[Any]:
        """Wait for at least one item, then return up to *max_items* available ones."""
        return self._get_many(max_items, True, None)


for _cls in (Queue, JoinableQueue, SimpleQueue):
    _cls.__module__ = "procly.queues"
