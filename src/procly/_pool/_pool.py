"""``Pool``: the standard library's process-pool API over procly's engine.

Differences from :class:`multiprocessing.pool.Pool`, all compatible:

* a worker that dies mid-task (SIGKILL, segfault, ``os._exit``) fails only that task, with
  :class:`~procly.errors.WorkerCrashedError`, and is replaced (the standard pool hangs);
* ``Pool(retries=N)`` runs a task whose worker crashed up to N more times;
* ``apply_async(..., timeout=)`` and ``Pool(task_timeout=)`` kill and replace the worker of
  an overdue task, which fails with :class:`~procly.errors.TaskTimeoutError`;
* ``imap``/``imap_unordered`` read their input lazily with at most ``buffersize`` chunks in
  flight, and choose the chunk size adaptively when none is given;
* use after ``close()``/``terminate()`` raises :class:`~procly.errors.PoolClosedError`, a
  :class:`ValueError` as before;
* ``progress=True`` (or a dict of tqdm options) on ``map``/``imap``/... shows a live
  progress bar; ``Pool(insights=True)`` + :meth:`Pool.insights` tells where the workers'
  time went; ``Pool(worker_state=True)`` gives each task a per-worker dict, and
  ``worker_exit=`` runs a hook in each worker as it exits normally.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from .._engine._chunking import default_map_chunksize
from .._engine._dispatcher import Engine
from .._engine._insights import PoolInsights
from .._engine._launcher import ProcessLauncher
from .._engine._lazy import LazyMap
from .._engine._messages import MODE_CALL, MODE_MAP, MODE_STARMAP
from .._engine._options import PoolOptions, check_timeout
from .._engine._progress import ProgressSpec, progress_bar, total_of
from .._engine._tasks import EngineLike, Task
from .._errors import PoolClosedError
from .._proc._context import DEFAULT_CONTEXT
from ._results import ApplyResult, IMapIterator, IMapUnorderedIterator, MapResult

__all__ = ("Pool",)


def _default_context() -> Any:
    # Registered by procly's top-level context module (this layer never imports it).
    return DEFAULT_CONTEXT.get()


def _check_chunksize(chunksize: int | None) -> int | None:
    if chunksize is None:
        return None
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise TypeError(f"chunksize must be an int or None, not {type(chunksize).__name__}")
    if chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
    return chunksize


#: Inputs that ``map`` slices into chunks as they are, without a copy into a list first (a
#: range's chunks are ranges: a few bytes to pickle instead of thousands of ints).
_SLICEABLE = (list, tuple, range)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Pool:
    """A pool of worker processes (see the module docstring for what procly adds).

    procly's keyword-only options:

    * ``task_timeout``, ``retries``, ``thread_limit``: see the module docstring;
    * ``worker_state=True``: each worker keeps one ``dict`` for its whole life and passes
      it as the **first positional argument** of every task function: ``fn(state, x)``
      for ``map``/``imap``, ``fn(state, *item)`` for ``starmap``,
      ``fn(state, *args, **kwds)`` for ``apply_async``.  The ``initializer`` receives it
      too (``initializer(state, *initargs)``), so it can fill it (open a connection, load
      a model), as does ``worker_exit``;
    * ``worker_exit``: a callable run in each worker when it exits normally: after
      :meth:`close` + :meth:`join`, or when it is retired by ``maxtasksperchild``.  Not
      after :meth:`terminate` (which is what leaving a ``with Pool()`` block does): the
      workers are killed.  If it raises, the parent gets a :class:`RuntimeWarning` with
      the remote traceback and the worker still exits;
    * ``insights=True``: workers measure where their time goes, see :meth:`insights`.

    Raises :class:`ValueError` for ``processes < 1`` or a bad ``maxtasksperchild`` and
    :class:`TypeError` for a non-callable ``initializer``, as the standard library does,
    and :class:`TypeError` for a non-bool ``worker_state``/``insights`` or a
    non-callable ``worker_exit``.
    """

    __module__ = "procly.pool"

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        *,
        task_timeout: float | None = None,
        retries: int = 0,
        thread_limit: int | str | None = "auto",
        worker_state: bool = False,
        worker_exit: Callable[..., object] | None = None,
        insights: bool = False,
    ) -> None:
        self._engine: EngineLike | None = None
        if context is None:
            context = _default_context()
        self._ctx = context
        method = context.get_start_method()
        options = PoolOptions.build(
            processes=processes,
            default_processes=os.cpu_count() or 1,
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_child=maxtasksperchild,
            task_timeout=task_timeout,
            retries=retries,
            thread_limit=thread_limit,
            worker_state=worker_state,
            worker_exit=worker_exit,
            insights=insights,
            context=context,
            start_method=method,
        )
        self._processes = options.processes
        self._closed = False
        self._engine = self._make_engine(options)

    def _make_engine(self, options: PoolOptions) -> EngineLike:
        return Engine(options, ProcessLauncher(options.context, "procly-pool-worker"))

    # -- helpers ---------------------------------------------------------------------------
    def _running_engine(self) -> EngineLike:
        engine = self._engine
        if engine is None or self._closed or not engine.running:
            if engine is not None and engine.broken is not None and not self._closed:
                raise engine.closed_error()  # BrokenProcessPool, with the cause
            raise PoolClosedError("Pool not running")
        return engine

    def insights(self) -> PoolInsights:
        """Where each worker's time went: starting, waiting, working, serializing, tasks.

        Needs ``Pool(insights=True)`` (:class:`ValueError` otherwise).  Every worker the
        pool has had is listed, including those that crashed, were killed or retired
        (``alive=False``); figures are as of each worker's last report (when ready, with
        each batch of tasks, at a normal exit): a task whose result you hold is counted.  ``print(pool.insights())`` shows a table.  Works
        after :meth:`close`/:meth:`join` too.
        """
        engine = self._engine
        if not isinstance(engine, Engine):
            raise ValueError(f"{type(self).__name__} has no insights: create a Pool with insights=True")
        return engine.insights()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        state = (
            "RUN"
            if self._engine is not None and self._engine.running and not self._closed
            else "CLOSE"
        )
        return f"<{type(self).__module__}.{type(self).__qualname__} state={state} pool_size={self._processes}>"

    # -- apply -----------------------------------------------------------------------------
    def apply(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Call ``func(*args, **kwds)`` in a worker and return its result (blocking)."""
        return self.apply_async(func, args, kwds, timeout=timeout).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        timeout: float | None = None,
    ) -> ApplyResult[Any]:
        """Schedule ``func(*args, **kwds)``; returns an :class:`AsyncResult`.

        ``timeout`` (procly) limits the task's running time: past it, its worker is killed
        and replaced and the task fails with :class:`~procly.errors.TaskTimeoutError`.
        """
        engine = self._engine
        if engine is None or self._closed or not engine.running:
            engine = self._running_engine()  # raises the right error
        timeout = engine.options.task_timeout if timeout is None else check_timeout(timeout)
        result: ApplyResult[Any] = ApplyResult(engine.waiter, callback, error_callback)
        engine.submit_one(
            Task(
                func,
                args if type(args) is tuple else tuple(args),
                dict(kwds) if kwds else None,
                result,
                MODE_CALL,
                timeout,
            )
        )
        return result

    # -- map -------------------------------------------------------------------------------
    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        chunksize: int | None,
        callback: Callable[[Any], object] | None,
        error_callback: Callable[[BaseException], object] | None,
        progress: ProgressSpec,
    ) -> MapResult:
        engine = self._running_engine()
        chunksize = _check_chunksize(chunksize)
        items = cast("Sequence[Any]", iterable) if type(iterable) in _SLICEABLE else list(iterable)
        if chunksize is None:
            chunksize = default_map_chunksize(len(items), self._processes)
        chunks = _chunks(items, chunksize)
        result = MapResult(
            engine.waiter,
            len(items),
            len(chunks),
            chunksize,
            callback,
            error_callback,
            progress_bar(progress, len(items)),
        )
        timeout = engine.options.task_timeout
        engine.submit(
            Task(func, chunk, None, result, mode=mode, tag=i, size=len(chunk), timeout=timeout)
            for i, chunk in enumerate(chunks)
        )
        return result

    def map(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        progress: ProgressSpec = False,
    ) -> list[Any]:
        """``list(map(func, iterable))`` computed by the workers, in order.

        ``progress=True`` (procly) shows a tqdm progress bar counting items, with rate and
        ETA; a dict passes tqdm keyword arguments (``{"desc": "resize"}``).  It needs the
        ``procly[progress]`` extra (:class:`ImportError` saying so otherwise).
        """
        return self._map_async(func, iterable, MODE_MAP, chunksize, None, None, progress).get()

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        progress: ProgressSpec = False,
    ) -> MapResult:
        """Like :meth:`map`, returning an :class:`AsyncResult`."""
        return self._map_async(
            func, iterable, MODE_MAP, chunksize, callback, error_callback, progress
        )

    def starmap(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        *,
        progress: ProgressSpec = False,
    ) -> list[Any]:
        """Like :meth:`map`, calling ``func(*item)``."""
        return self._map_async(
            func, iterable, MODE_STARMAP, chunksize, None, None, progress
        ).get()

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], object] | None = None,
        error_callback: Callable[[BaseException], object] | None = None,
        *,
        progress: ProgressSpec = False,
    ) -> MapResult:
        """Like :meth:`starmap`, returning an :class:`AsyncResult`."""
        return self._map_async(
            func, iterable, MODE_STARMAP, chunksize, callback, error_callback, progress
        )

    def _lazy(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None,
        ordered: bool,
        buffersize: int | None,
        progress: ProgressSpec,
    ) -> LazyMap:
        engine = self._running_engine()
        chunksize = _check_chunksize(chunksize)
        if buffersize is None:
            buffersize = 4 * self._processes + 2
        elif isinstance(buffersize, bool) or not isinstance(buffersize, int) or buffersize < 1:
            raise ValueError(f"buffersize must be a positive int or None, not {buffersize!r}")
        return LazyMap(
            engine,
            func,
            iterable,
            mode=MODE_MAP,
            chunksize=chunksize,
            ordered=ordered,
            max_chunks=buffersize,
            task_timeout=engine.options.task_timeout,
            progress=progress,
            total=total_of(iterable),
        )

    def imap(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        buffersize: int | None = None,
        progress: ProgressSpec = False,
    ) -> IMapIterator[Any]:
        """Lazy, ordered :meth:`map`.

        The input is read as results are consumed, with at most ``buffersize`` chunks
        (default ``4 * processes + 2``) submitted but not yet consumed.  Without
        ``chunksize`` the chunk size adapts to the measured cost of an item.
        ``progress`` as for :meth:`map` (the total is known only when the input has a
        ``len()``); the bar closes at the end, or when the iterator is closed or dropped.
        """
        return IMapIterator(self._lazy(func, iterable, chunksize, True, buffersize, progress))

    def imap_unordered(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        *,
        buffersize: int | None = None,
        progress: ProgressSpec = False,
    ) -> IMapUnorderedIterator[Any]:
        """Like :meth:`imap`, yielding results as they complete."""
        return IMapUnorderedIterator(
            self._lazy(func, iterable, chunksize, False, buffersize, progress)
        )

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Accept no more work; the workers exit when the submitted work is done."""
        self._closed = True
        if self._engine is not None:
            self._engine.close()

    def terminate(self) -> None:
        """Kill the workers now; unfinished tasks fail with ``PoolClosedError``."""
        self._closed = True
        if self._engine is not None:
            self._engine.terminate()

    def join(self) -> None:
        """Wait for the workers to exit; :class:`ValueError` unless closed or terminated."""
        if not self._closed:
            raise ValueError("Pool is still running")
        if self._engine is not None:
            self._engine.join()

    def __enter__(self) -> Pool:
        if self._closed:
            raise PoolClosedError("Pool not running")
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None and engine.running and not getattr(self, "_closed", True):
            _warn(f"unclosed running pool {self!r}", ResourceWarning, source=self)
            engine.close()
