"""Result objects of the standard ``Pool`` API: ``AsyncResult``, ``MapResult``, ``IMapIterator``.

They are engine sinks (:class:`procly._engine._tasks.TaskSink`): the dispatcher thread
reports each task's outcome to them, and they run the caller's ``callback`` /
``error_callback`` there, as the standard library runs them in its result-handler thread
(so a callback must not block).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .._engine._lazy import LazyMap
from .._engine._progress import ProgressBar
from .._engine._tasks import Task
from .._engine._waiter import ResultWaiter
from .._errors import TimeoutError as ProcTimeoutError

__all__ = ("ApplyResult", "AsyncResult", "IMapIterator", "IMapUnorderedIterator", "MapResult")

T = TypeVar("T")


class ApplyResult(Generic[T]):
    """The pending result of ``apply_async`` (standard name; ``AsyncResult`` is an alias).

    :meth:`get` re-raises the task's own exception, with the remote traceback as its
    ``__cause__``; it raises :class:`procly.TimeoutError` if *timeout* passes first.
    """

    __module__ = "procly.pool"

    # Class-level defaults: an apply_async sets only what differs (a hot path).
    _ready = False
    _ok = False
    _value: Any = None
    _callback: Callable[[Any], object] | None = None
    _error_callback: Callable[[BaseException], object] | None = None

    def __init__(
        self,
        waiter: ResultWaiter,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
    ) -> None:
        self._waiter = waiter
        if callback is not None:
            self._callback = callback
        if error_callback is not None:
            self._error_callback = error_callback

    # sink
    def task_started(self, task: Task) -> bool:
        return True

    def task_done(self, task: Task, ok: bool, value: Any) -> None:
        if self._callback is None and self._error_callback is None:  # the hot path
            self._ok = ok
            self._value = value
            self._ready = True
        else:
            self._set(ok, value)

    def _set(self, ok: bool, value: Any) -> None:
        self._ok = ok
        self._value = value
        try:
            if ok and self._callback is not None:
                self._callback(value)
            elif not ok and self._error_callback is not None:
                self._error_callback(value)
        finally:
            self._ready = True  # after the callbacks, as in the standard library

    # public API
    def ready(self) -> bool:
        """Whether the call has completed."""
        return self._ready

    def successful(self) -> bool:
        """Whether the call completed without raising; :class:`ValueError` if not ready."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._ok

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is available or *timeout* seconds pass."""
        self._waiter.wait_for(self.ready, timeout)

    def get(self, timeout: float | None = None) -> T:
        """The result; re-raises the task's exception; :class:`procly.TimeoutError` on timeout."""
        if not self._ready and not self._waiter.wait_for(self.ready, timeout):
            raise ProcTimeoutError
        if self._ok:
            return self._value  # type: ignore[no-any-return]
        raise self._value


AsyncResult = ApplyResult


class MapResult(ApplyResult[list[Any]]):
    """The pending result of ``map_async``/``starmap_async``: one task per chunk.

    A ``progress`` bar advances by each chunk's items and is closed when the map ends,
    whether it succeeded or failed.
    """

    __module__ = "procly.pool"

    def __init__(
        self,
        waiter: ResultWaiter,
        n_items: int,
        n_chunks: int,
        chunksize: int,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        progress: ProgressBar | None = None,
    ) -> None:
        super().__init__(waiter, callback, error_callback)
        self._progress = progress
        self._chunksize = chunksize
        self._items: list[Any] = [None] * n_items
        self._left = n_chunks
        self._lock = threading.Lock()
        self._failed = False
        if n_chunks == 0:
            if progress is not None:
                progress.close()
            self._set(True, self._items)

    def task_done(self, task: Task, ok: bool, value: Any) -> None:
        with self._lock:
            if self._failed:
                return
            if not ok:
                self._failed = True
                self._items = []
            else:
                start = task.tag * self._chunksize
                self._items[start : start + len(value)] = value
                self._left -= 1
            finished = not ok or not self._left
        progress = self._progress
        if progress is not None:
            if ok:
                progress.update(task.size)
            if finished:
                progress.close()  # before the result is ready: done means closed
        if not finished:
            return
        if ok:
            self._set(True, self._items)
        else:
            self._set(False, value)


class IMapIterator(Iterator[T]):
    """The iterator ``imap`` returns: ``next(timeout=None)`` as in the standard library.

    Garbage-collecting it stops the feeding of its input.
    """

    __module__ = "procly.pool"

    def __init__(self, lazy: LazyMap) -> None:
        self._lazy = lazy

    def __iter__(self) -> IMapIterator[T]:
        return self

    def next(self, timeout: float | None = None) -> T:
        """The next result; :class:`procly.TimeoutError` if none arrives within *timeout*."""
        return self._lazy.next(timeout)  # type: ignore[no-any-return]

    __next__ = next

    def close(self) -> None:
        """Stop feeding the input and drop the results still to come."""
        self._lazy.close()

    def __del__(self) -> None:
        try:
            self._lazy.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class IMapUnorderedIterator(IMapIterator[T]):
    """The iterator ``imap_unordered`` returns (results in completion order)."""

    __module__ = "procly.pool"
