"""Lazy maps: ``imap``, ``imap_unordered`` and ``Executor.map`` with backpressure.

::

    caller's iterable ──> feeder thread ──chunks──> Engine ──> workers
                              ^  (blocks while max_chunks are unconsumed)
    consumer (next()) <── results by chunk index <── sink (dispatcher thread)

* **The feeder thread** pulls the input lazily, groups it into chunks (fixed ``chunksize``,
  or adaptive, see :mod:`._chunking`) and submits each chunk as one task.  It waits while
  ``max_chunks`` chunks are submitted but not yet consumed, so an infinite generator
  streams in bounded memory.  An exception raised by the input is delivered to the consumer
  at its position.
* **The dispatcher thread** (through :meth:`LazyMap.task_done`) stores each chunk's result.
* **The consumer** (:meth:`LazyMap.next`) yields items in input order (``ordered``) or in
  completion order, and each fully taken chunk lets the feeder submit one more.

:meth:`LazyMap.close` (also called when the iterator is garbage-collected) stops the feeder
and drops results still to come.  A ``progress`` bar (:mod:`._progress`) advances as chunks
finish and is closed at the end of the map or by :meth:`LazyMap.close`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from .._errors import TimeoutError as ProcTimeoutError
from ._chunking import ChunkSizer
from ._progress import ProgressSpec, progress_bar
from ._tasks import EngineLike, Task

__all__ = ("LazyMap",)

_END = object()


class LazyMap:
    """The shared state of one lazy map (see the module docstring).

    ``next(timeout)`` raises :class:`StopIteration` at the end, the task's exception for a
    failed chunk (then carries on), and ``timeout_error`` (default
    :class:`procly.TimeoutError`) if nothing arrived in time.
    """

    def __init__(
        self,
        engine: EngineLike,
        fn: Callable[..., Any],
        iterable: Any,
        *,
        mode: int,
        chunksize: int | None,
        ordered: bool,
        max_chunks: int,
        task_timeout: float | None = None,
        progress: ProgressSpec = False,
        total: int | None = None,
    ) -> None:
        self._iterator = iter(iterable)  # TypeError here, in the caller, for a non-iterable
        self._engine = engine
        self._fn = fn
        self._mode = mode
        self._chunksize = chunksize
        self._sizer = None if chunksize else ChunkSizer()
        self._ordered = ordered
        self._max_chunks = max(1, max_chunks)
        self._task_timeout = task_timeout
        self._cond = threading.Condition(threading.Lock())
        self._results: dict[int, tuple[bool, Any]] = {}
        self._arrivals: deque[int] = deque()
        self._submitted = 0
        self._taken = 0
        self._next_index = 0
        self._end_index: int | None = None  # number of chunks once the input is exhausted
        self._feed_error: BaseException | None = None
        self._closed = False
        self._buf: list[Any] = []
        self._pos = 0
        # ``progress=`` of *total* items: ImportError/TypeError before anything started
        self._progress = progress_bar(progress, total)
        try:
            engine.add_source()
        except BaseException:
            self.close()
            raise
        self._feeder = threading.Thread(target=self._feed, name="procly-imap-feeder", daemon=True)
        self._feeder.start()

    # -- feeder thread ---------------------------------------------------------------------
    def _feed(self) -> None:
        try:
            self._feed_loop()
        finally:
            self._engine.remove_source()

    def _feed_loop(self) -> None:
        cond = self._cond
        it = self._iterator
        index = 0
        while True:
            with cond:
                while not self._closed and self._submitted - self._taken >= self._max_chunks:
                    cond.wait()
                if self._closed:
                    return
            size = self._chunksize or self._sizer.next_size()  # type: ignore[union-attr]
            try:
                chunk = list(islice(it, size))
            except BaseException as exc:
                with cond:
                    self._feed_error = exc
                    self._end_index = index
                    cond.notify_all()
                return
            if not chunk:
                with cond:
                    self._end_index = index
                    cond.notify_all()
                return
            task = Task(
                self._fn,
                chunk,
                None,
                self,
                mode=self._mode,
                tag=index,
                size=len(chunk),
                timeout=self._task_timeout,
            )
            with cond:
                self._submitted += 1
            try:
                self._engine.submit_one(task, from_source=True)
            except BaseException as exc:
                with cond:
                    self._feed_error = exc
                    self._end_index = index
                    self._submitted -= 1
                    cond.notify_all()
                return
            index += 1

    # -- sink (dispatcher thread) ----------------------------------------------------------
    def task_started(self, task: Task) -> bool:
        return not self._closed

    def task_done(self, task: Task, ok: bool, value: Any) -> None:
        if ok and self._sizer is not None and task.duration:
            self._sizer.observe(task.size, task.duration)
        if self._progress is not None:
            self._progress.update(task.size)
        with self._cond:
            if self._closed:
                return
            self._results[task.tag] = (ok, value)
            self._arrivals.append(task.tag)
            self._cond.notify_all()

    # -- consumer --------------------------------------------------------------------------
    def next(self, timeout: float | None = None) -> Any:
        """The next item (see the class docstring for what it raises)."""
        buf = self._buf
        if self._pos < len(buf):
            item = buf[self._pos]
            self._pos += 1
            return item
        return self._next_chunk(timeout)

    def _next_chunk(self, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = self._cond
        with cond:
            while True:
                found = self._take_locked()
                if found is not _END:
                    ok, value = found  # type: ignore[misc]
                    self._taken += 1
                    cond.notify_all()
                    break
                if self._end_index is not None and self._taken >= self._end_index:
                    if self._progress is not None:
                        self._progress.close()
                    err = self._feed_error
                    if err is not None:
                        self._feed_error = None
                        raise err
                    raise StopIteration
                if self._closed:
                    raise StopIteration
                if deadline is None:
                    cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0 or not cond.wait(left):
                        if self._take_ready_locked():
                            continue
                        raise ProcTimeoutError("no result arrived within the timeout")
        if not ok:
            self._buf = []
            self._pos = 0
            raise value
        self._buf = value
        self._pos = 1
        if not value:  # pragma: no cover - chunks are never empty
            return self._next_chunk(timeout)
        return value[0]

    def _take_ready_locked(self) -> bool:
        if self._ordered:
            return self._next_index in self._results
        return bool(self._arrivals)

    def _take_locked(self) -> Any:
        if self._ordered:
            idx = self._next_index
            if idx not in self._results:
                return _END
            self._next_index += 1
            return self._results.pop(idx)
        while self._arrivals:
            idx = self._arrivals.popleft()
            if idx in self._results:
                return self._results.pop(idx)
        return _END

    def close(self) -> None:
        """Stop feeding and drop what is still to come (idempotent)."""
        with self._cond:
            self._closed = True
            self._results.clear()
            self._cond.notify_all()
        if self._progress is not None:
            self._progress.close()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.next()
