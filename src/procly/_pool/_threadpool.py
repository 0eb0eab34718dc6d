"""``ThreadPool``: the ``Pool`` API over threads (``multiprocessing.pool.ThreadPool``).

::

    caller threads ── submit ──> deque (one Condition) ──> N worker threads
                                                              │ run fn, report to the sink
    results (AsyncResult / MapResult / imap) <────────────────┘

* **Caller threads** append tasks under the condition and notify one worker.
* **Worker threads** run the initializer once, then take tasks in order and report each
  through its sink; nothing is pickled (arguments and results are shared objects, as in
  the standard library), and exceptions reach the caller unchanged.

Threads cannot be killed, so per-task timeouts are refused with :class:`ValueError`, and
``terminate()`` fails the queued tasks and waits for the running ones to return.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from itertools import starmap
from typing import Any

from .._engine._messages import MODE_CALL, MODE_MAP
from .._engine._options import PoolOptions
from .._engine._tasks import EngineLike, Task
from .._engine._waiter import ResultWaiter
from .._errors import PoolClosedError
from ._pool import Pool

__all__ = ("ThreadPool",)

_RUN, _CLOSING, _TERMINATING = range(3)


class _ThreadEngine:
    """The :class:`~procly._engine._tasks.EngineLike` of a :class:`ThreadPool`."""

    def __init__(self, options: PoolOptions) -> None:
        self.options = options
        self.waiter = ResultWaiter()
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Task] = deque()
        self._state = _RUN
        self._sources = 0
        self._busy = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"procly-thread-worker-{i}", daemon=True)
            for i in range(options.processes)
        ]
        for t in self._threads:
            t.start()

    # -- EngineLike ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._state == _RUN

    @property
    def broken(self) -> BaseException | None:
        return None

    def closed_error(self) -> BaseException:
        return PoolClosedError("Pool not running")

    def _accept(self, tasks: Iterable[Task], from_source: bool) -> None:
        with self._cond:
            if self._state != _RUN and not (from_source and self._state == _CLOSING):
                raise self.closed_error()
            before = len(self._queue)
            for task in tasks:
                if task.timeout is not None:
                    raise ValueError(
                        "a ThreadPool cannot stop a running thread: per-task timeouts "
                        "need a process Pool"
                    )
                self._queue.append(task)
            self._cond.notify(len(self._queue) - before)

    def submit(self, tasks: Iterable[Task]) -> None:
        self._accept(tasks, False)

    def submit_one(self, task: Task, *, from_source: bool = False) -> None:
        self._accept((task,), from_source)

    def add_source(self) -> None:
        with self._cond:
            if self._state != _RUN:
                raise self.closed_error()
            self._sources += 1

    def remove_source(self) -> None:
        with self._cond:
            self._sources -= 1
            self._cond.notify_all()

    def cancel(self, task: Task) -> None:
        with self._cond:
            try:
                self._queue.remove(task)
            except ValueError:
                pass

    def close(self) -> None:
        with self._cond:
            if self._state == _RUN:
                self._state = _CLOSING
            self._cond.notify_all()

    def terminate(self) -> None:
        with self._cond:
            self._state = _TERMINATING
            dropped = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for task in dropped:
            self._report(task, False, PoolClosedError("the pool was terminated"))
        self.join()

    def join(self, timeout: float | None = None) -> bool:
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    # -- worker threads --------------------------------------------------------------------
    def _report(self, task: Task, ok: bool, value: Any) -> None:
        try:
            task.sink.task_done(task, ok, value)
        except BaseException:
            print("Exception in a procly ThreadPool callback:", file=sys.stderr)
            traceback.print_exc()
        waiter = self.waiter
        if waiter.waiters:
            with waiter.cond:
                waiter.cond.notify_all()

    def _work(self) -> None:
        o = self.options
        if o.initializer is not None:
            try:
                o.initializer(*o.initargs)
            except BaseException:
                traceback.print_exc()
        cond = self._cond
        while True:
            with cond:
                while not self._queue:
                    if self._state == _TERMINATING or (
                        self._state == _CLOSING and not self._sources
                    ):
                        cond.notify_all()
                        return
                    cond.wait()
                task = self._queue.popleft()
            if not task.sink.task_started(task):
                continue
            fn: Callable[..., Any] = task.fn
            value: Any = None
            try:
                if task.mode == MODE_CALL:
                    value = fn(*task.args, **(task.kwargs or {}))
                elif task.mode == MODE_MAP:
                    value = list(map(fn, task.args))
                else:
                    value = list(starmap(fn, task.args))
            except BaseException as exc:
                self._report(task, False, exc)
            else:
                self._report(task, True, value)
            del task, value


class ThreadPool(Pool):
    """A :class:`Pool` whose workers are threads of this process (standard-library API).

    Raises :class:`ValueError` for ``processes < 1``; ``apply_async(..., timeout=)``
    raises :class:`ValueError` (threads cannot be stopped).
    """

    __module__ = "procly.pool"

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        self._engine: EngineLike | None = None
        self._ctx = None
        options = PoolOptions.build(
            processes=processes,
            default_processes=os.cpu_count() or 1,
            initializer=initializer,
            initargs=initargs,
            start_method="thread",
            thread_limit=None,
        )
        self._processes = options.processes
        self._closed = False
        self._engine = _ThreadEngine(options)
