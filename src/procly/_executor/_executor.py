"""``ProcessPoolExecutor``: a real :class:`concurrent.futures.Executor` over procly's engine.

It returns real :class:`concurrent.futures.Future` objects (a subclass), so
:func:`concurrent.futures.as_completed`, :func:`~concurrent.futures.wait` and
:func:`asyncio.wrap_future` work.  Compared with the standard library's executor:

* a worker that dies fails only the task it was running, with
  :class:`~procly.errors.WorkerCrashedError` (a :class:`BrokenProcessPool`), and is
  replaced; the executor stays usable (the standard one breaks for good);
* ``retries=N`` runs a call whose worker crashed up to N more times;
* ``Future.cancel()`` also stops a task that is already running (its worker is killed
  and replaced);
* ``submit(..., timeout=)`` is not possible (it would shadow the function's own keyword),
  so per-task timeouts come from ``task_timeout=`` on the executor or from
  :meth:`ProcessPoolExecutor.submit_with_timeout`;
* :meth:`~ProcessPoolExecutor.map` reads its input lazily with at most ``buffersize``
  chunks in flight and picks the chunk size adaptively when none is given, and shows a
  tqdm progress bar with ``progress=True``;
* ``worker_state=``, ``worker_exit=`` and ``insights=`` as for :class:`procly.Pool`.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .._engine._dispatcher import Engine
from .._engine._insights import PoolInsights
from .._engine._launcher import ProcessLauncher
from .._engine._lazy import LazyMap
from .._engine._messages import MODE_CALL, MODE_STARMAP
from .._engine._options import PoolOptions, check_timeout
from .._engine._progress import ProgressSpec, total_of
from .._engine._tasks import Task
from .._errors import PoolClosedError
from .._proc._context import DEFAULT_CONTEXT

__all__ = ("EngineFuture", "ProcessPoolExecutor")

T = TypeVar("T")


#: Serializes making a future's condition with the dispatcher's lock-free completion
#: (see :class:`EngineFuture`); a lock constant, never reassigned.
_MAKE_CONDITION = threading.Lock()
_SETTLED = frozenset({"FINISHED", "CANCELLED", "CANCELLED_AND_NOTIFIED"})


class _ListOnUse:
    """A list attribute made on first use (a future's waiter and callback lists: they are
    only used under its condition, or once its state is final)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._key = f"{name}_made"

    def __get__(self, obj: object, owner: type | None = None) -> list[Any]:
        if obj is None:
            return []  # read on the class itself
        made: list[Any] | None = obj.__dict__.get(self._key)
        if made is None:
            made = obj.__dict__[self._key] = []
        return made

    def __set__(self, obj: object, value: list[Any]) -> None:
        obj.__dict__[self._key] = value


class EngineFuture(cf.Future[T]):
    """A :class:`concurrent.futures.Future` whose :meth:`cancel` can stop a running task.

    Its condition is made on first use: a future nobody waits on, watches (``wait``,
    ``as_completed``, callbacks) or cancels before it completes never needs one, and
    making it was the largest per-``submit`` cost.  The rule that keeps this exact: the
    dispatcher completes a future without its condition only while holding
    ``_MAKE_CONDITION`` and seeing none made, and every waiter, watcher and ``cancel``
    goes through the condition, which is made under that same lock; so either the waiter
    finds the state already final, or the dispatcher finds the condition and notifies.
    :meth:`result` is the exception: it waits with the engine's shared
    :class:`~procly._engine._waiter.ResultWaiter`, which the dispatcher notifies after every
    round that completed a future, and :meth:`cancel` notifies too.
    """

    _engine: Engine | None = None
    _task: Task | None = None
    _cond: threading.Condition | None = None
    # cf.Future.__init__'s fields as class defaults (see the class docstring), its two
    # lists made on first use: a submit sets none of them
    _state = "PENDING"
    _result: Any = None
    _exception: BaseException | None = None
    _waiters = _ListOnUse()
    _done_callbacks = _ListOnUse()

    def __init__(self) -> None:
        pass  # not cf.Future.__init__: its fields are the class defaults above

    @property  # type: ignore[override]
    def _condition(self) -> threading.Condition:
        cond = self._cond
        if cond is None:
            with _MAKE_CONDITION:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    @_condition.setter
    def _condition(self, cond: threading.Condition) -> None:
        self._cond = cond

    def _settled(self) -> bool:
        return self._state in _SETTLED

    def result(self, timeout: float | None = None) -> T:
        if self._state != "FINISHED":
            engine = self._engine
            if engine is None:
                return super().result(timeout)
            # Wait with the engine's shared waiter rather than a condition of our own: the
            # dispatcher wakes it once per burst of results instead of once per future.
            if not engine.waiter.wait_for(self._settled, timeout):
                raise cf.TimeoutError()
            if self._state != "FINISHED":
                return super().result(0)  # cancelled: raises CancelledError
        exc = self._exception  # final: read without the condition
        if exc is None:
            return self._result  # type: ignore[no-any-return]
        try:
            raise exc
        finally:
            del exc  # no reference cycle through the traceback

    # sink protocol (dispatcher thread)
    def task_started(self, task: Task) -> bool:
        # A task whose worker died before starting it is handed out again: already running.
        if self._state == "RUNNING":
            return True
        if self._cond is None:
            with _MAKE_CONDITION:
                if self._cond is None and self._state == "PENDING":
                    self._state = "RUNNING"  # nobody waits: no notification due
                    return True
        return self.set_running_or_notify_cancel()

    def task_done(self, task: Task, ok: bool, value: Any) -> None:
        if self._cond is None:
            with _MAKE_CONDITION:
                if self._cond is None and self._state in ("PENDING", "RUNNING"):
                    if ok:
                        self._result = value
                    else:
                        self._exception = value
                    self._state = "FINISHED"  # last: result() reads it without a lock
                    return
        try:
            if ok:
                self.set_result(value)
            else:
                self.set_exception(value)
        except cf.InvalidStateError:  # cancelled meanwhile
            pass

    def cancel_queued(self, task: Task) -> bool:
        """Engine hook for ``shutdown(cancel_futures=True)``: cancel if not started."""
        cancelled = cf.Future.cancel(self)
        if cancelled and self._engine is not None:
            self._engine.waiter.notify()  # result() waits there
        return cancelled

    def cancel(self) -> bool:
        """Cancel the call; unlike the standard library, a *running* call is stopped too
        (its worker is killed and replaced).  False only if it already finished."""
        with self._condition:
            if self._state == "RUNNING":
                self._state = "PENDING"
                running = True
            else:
                running = False
            cancelled = super().cancel()
        engine = self._engine
        if cancelled and engine is not None:
            engine.waiter.notify()  # result() waits there
            if running and self._task is not None:
                engine.cancel(self._task)
        return cancelled


def _default_context() -> Any:
    # Registered by procly's top-level context module (this layer never imports it).
    return DEFAULT_CONTEXT.get()


class ProcessPoolExecutor(cf.Executor):
    """Runs calls in a pool of worker processes (drop-in for the standard library's).

    procly's keyword-only options: ``task_timeout``, ``retries``, ``thread_limit`` (see the
    module docstring), and as for :class:`procly.Pool`:

    * ``worker_state=True``: each worker keeps one ``dict`` across its calls and passes it
      as the first positional argument: ``fn(state, *args, **kwargs)`` for
      :meth:`submit`, ``fn(state, *items)`` for :meth:`map`, and
      ``initializer(state, *initargs)``, so the initializer can fill it;
    * ``worker_exit``: run in each worker when it exits normally (:meth:`shutdown`, also
      on leaving a ``with`` block, or retirement by ``max_tasks_per_child``); with
      ``worker_state=True`` it receives the state.  If it raises, the parent gets a
      :class:`RuntimeWarning` with the remote traceback;
    * ``insights=True``: see :meth:`insights`.

    Raises :class:`ValueError` for ``max_workers <= 0`` and :class:`TypeError` for a
    non-callable ``initializer``; ``submit`` after ``shutdown`` raises :class:`RuntimeError`,
    and once the pool is broken (an initializer failed) :class:`BrokenProcessPool`.
    """

    __module__ = "procly.futures"

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
        task_timeout: float | None = None,
        retries: int = 0,
        thread_limit: int | str | None = "auto",
        worker_state: bool = False,
        worker_exit: Callable[..., object] | None = None,
        insights: bool = False,
    ) -> None:
        self._engine: Engine | None = None
        if mp_context is None:
            mp_context = _default_context()
        options = PoolOptions.build(
            processes=max_workers,
            default_processes=os.cpu_count() or 1,
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_child=max_tasks_per_child,
            task_timeout=task_timeout,
            retries=retries,
            thread_limit=thread_limit,
            worker_state=worker_state,
            worker_exit=worker_exit,
            insights=insights,
            context=mp_context,
            start_method=mp_context.get_start_method(),
            processes_name="max_workers",
            max_tasks_name="max_tasks_per_child",
        )
        self._max_workers = options.processes
        self._mp_context = mp_context
        self._shutdown_lock = threading.Lock()
        self._shutdown = False
        self._maps: weakref.WeakSet[LazyMap] = weakref.WeakSet()
        self._engine = Engine(options, ProcessLauncher(mp_context, "procly-executor-worker"))

    def insights(self) -> PoolInsights:
        """Where each worker's time went (see :meth:`procly.Pool.insights`); needs
        ``insights=True`` (:class:`ValueError` otherwise)."""
        assert self._engine is not None
        return self._engine.insights()

    def _submit(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> EngineFuture[T]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        engine = self._engine
        assert engine is not None
        if engine.broken is not None:
            raise engine.closed_error()
        fut: EngineFuture[T] = EngineFuture()
        fut._engine = engine
        fut._task = task = Task(fn, args, kwargs or None, fut, MODE_CALL, timeout)
        try:
            engine.submit_one(task)
        except PoolClosedError:
            raise RuntimeError("cannot schedule new futures after shutdown") from None
        return fut

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` and return a :class:`~concurrent.futures.Future`."""
        engine = self._engine
        default = engine.options.task_timeout if engine is not None else None
        return self._submit(fn, args, kwargs, default)

    def submit_with_timeout(
        self, timeout: float | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> cf.Future[T]:
        """Like :meth:`submit`, with a per-task *timeout* in seconds (procly).

        Past it, the worker running the call is killed and replaced, and the future
        fails with :class:`~procly.errors.TaskTimeoutError`.
        """
        return self._submit(fn, args, kwargs, check_timeout(timeout))

    def map(  # type: ignore[override]
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
        progress: ProgressSpec = False,
    ) -> Iterator[T]:
        """Lazy ``map(fn, *iterables)``: results in order.

        ``timeout`` counts from this call, as in the standard library, and raises
        :class:`TimeoutError` from the iterator.  At most ``buffersize`` chunks (default
        ``4 * max_workers + 2``) are submitted and not yet consumed; ``chunksize`` defaults
        to an adaptive size.  The first failing call's exception is raised and the rest
        is cancelled.  ``progress=True`` (procly) shows a tqdm bar over the items (a dict
        passes tqdm keyword arguments; needs ``procly[progress]``); it closes when the
        results are exhausted or the iterator is closed or dropped.
        """
        if chunksize is not None and (
            isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
        ):
            raise ValueError("chunksize must be >= 1.")
        if buffersize is not None and (
            isinstance(buffersize, bool) or not isinstance(buffersize, int) or buffersize < 1
        ):
            raise ValueError("buffersize must be None or > 0.")
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        engine = self._engine
        assert engine is not None
        if engine.broken is not None:
            raise engine.closed_error()
        end = None if timeout is None else time.monotonic() + timeout
        try:
            lazy = LazyMap(
                engine,
                fn,
                zip(*iterables, strict=False),
                mode=MODE_STARMAP,
                chunksize=chunksize,
                ordered=True,
                max_chunks=buffersize or 4 * self._max_workers + 2,
                task_timeout=engine.options.task_timeout,
                progress=progress,
                total=total_of(*iterables),
            )
        except PoolClosedError:
            raise RuntimeError("cannot schedule new futures after shutdown") from None
        self._maps.add(lazy)
        return _map_results(lazy, end)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; ``cancel_futures`` cancels what has not started.

        With ``wait`` it returns once every running and pending call is done and the
        workers have exited.
        """
        with self._shutdown_lock:
            self._shutdown = True
        engine = self._engine
        if engine is None:
            return
        if cancel_futures:
            engine.cancel_queued()
            for lazy in list(self._maps):
                lazy.close()
        engine.close()
        if wait:
            engine.join()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        """Like the standard library (``shutdown(wait=True)``), except after Ctrl-C:
        ``KeyboardInterrupt`` kills the workers at once instead of waiting for them."""
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            with self._shutdown_lock:
                self._shutdown = True
            for lazy in list(self._maps):
                lazy.close()
            if self._engine is not None:
                self._engine.terminate()
            return None
        self.shutdown(wait=True)
        return None

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and not getattr(self, "_shutdown", True):
            engine.close()


def _map_results(lazy: LazyMap, end: float | None) -> Iterator[Any]:
    try:
        while True:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise cf.TimeoutError()
            try:
                item = lazy.next(left)
            except StopIteration:
                return
            yield item
    finally:
        lazy.close()
