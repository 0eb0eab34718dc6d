"""The worker process's main loop (runs in the child; imports nothing parent-side).

::

    parent (dispatcher thread)                  this worker process
        TaskBatch / Shutdown  ── channel ──>    recv frame -> run each call in order
        <── ResultItem per task, InitFailed, Retiring
        <── WorkerInsights (insights=True), ExitHookFailed (worker_exit raised)

* Receives :class:`~._messages.TaskBatch` frames and runs the calls in order.  Each call's
  arguments are unpickled right before it runs, so a crash while unpickling them is
  charged to that call.
* Sends one :class:`~._messages.ResultItem` per task as soon as it ends: the parent then
  always knows exactly which task a dead worker was running (the first one without a
  result).
* Catches every exception, ``SystemExit`` and ``KeyboardInterrupt`` included: they fail
  their task, never the worker.  A result or exception that cannot be pickled fails its
  task with :class:`~procly.errors.SerializationError`.
* Ignores SIGINT: Ctrl-C in a terminal reaches the whole process group, and it is the
  parent's job to stop the pool (it kills the workers).
* Exits on :class:`~._messages.Shutdown`, on end of file (the parent went away), or after
  ``max_tasks_per_child`` tasks (announced with :class:`~._messages.Retiring`).  On
  Shutdown and retirement (the normal exits) it first runs the ``worker_exit`` hook.
* ``worker_state=True``: the task functions, the initializer and the exit hook get this
  worker's one state dict as their first argument (bound once per cached function, so
  the per-task path is unchanged).
* ``insights=True``: the worker also times its waiting, working and (un)pickling and
  reports the totals (:class:`~._insights.WorkerInsights`) when ready, with each batch (just
  before its last result) and at a normal exit; with insights off the per-task path only tests one ``None``.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import starmap
from typing import Any

from .._serial import _pickler
from ._channel import ChannelEnd, FrameReader, send_frame, write_frame
from ._insights import WorkerInsights
from ._messages import (
    MODE_ARGS,
    MODE_CALL,
    MODE_CALL_KW,
    MODE_MAP,
    ExitHookFailed,
    InitFailed,
    ResultItem,
    Retiring,
    Shutdown,
    TaskBatch,
)
from ._remote_tb import capture, describe_call, unpicklable_result

__all__ = (
    "MAX_POOL_DEPTH",
    "THREAD_LIMIT_VARS",
    "WorkerSetup",
    "apply_environment",
    "check_pool_depth",
    "close_inherited",
    "limit_native_threads",
    "native_thread_env",
    "warn_exit_hook_failed",
    "worker_main",
)

#: How deeply pools may nest (a task using a pool whose tasks use a pool ...).
MAX_POOL_DEPTH = 3
#: Environment variable holding this process's pool depth (inherited by every start method).
_DEPTH_ENV = "PROCLY_POOL_DEPTH"


#: Thread-pool size variables of the usual native libraries (OpenMP, OpenBLAS, MKL, ...).
THREAD_LIMIT_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
)


def native_thread_env(limit: int | None) -> tuple[tuple[str, str], ...]:
    """The variables a worker should set to cap native thread pools at *limit* (parent side).

    A variable set in the parent's environment is left out: the user's choice wins.  (It is
    computed in the parent because a forkserver's children inherit the server's
    environment, not the parent's current one.)
    """
    if limit is None:
        return ()
    return tuple((name, str(limit)) for name in THREAD_LIMIT_VARS if name not in os.environ)


def limit_native_threads(env: tuple[tuple[str, str], ...]) -> None:
    """Apply :func:`native_thread_env`'s result in the worker.

    Through the environment this takes effect for libraries loaded after the worker starts
    (spawn, forkserver); if :mod:`threadpoolctl` is loaded, pools already loaded (fork) are
    limited too.
    """
    if not env:
        return
    os.environ.update(env)
    # Only if already loaded (inherited under fork, where it matters): a failed import
    # would cost every worker start a search of sys.path.
    threadpoolctl = sys.modules.get("threadpoolctl")
    if threadpoolctl is not None:  # pragma: no cover - optional dependency
        threadpoolctl.threadpool_limits(int(env[0][1]))


def apply_environment(setup: WorkerSetup) -> None:
    """What a worker's environment needs: its pool depth (see :func:`check_pool_depth`)
    and the native thread limits (:func:`limit_native_threads`)."""
    os.environ[_DEPTH_ENV] = str(setup.depth)
    limit_native_threads(setup.thread_env)


def check_pool_depth() -> int:
    """The depth a new pool created here would have; :class:`RuntimeError` if too deep."""
    depth = int(os.environ.get(_DEPTH_ENV, "0") or 0)
    if depth >= MAX_POOL_DEPTH:
        raise RuntimeError(
            f"pools nested {depth} deep: a worker of a pool that is itself a worker of a "
            f"pool ... may not start another (limit {MAX_POOL_DEPTH})"
        )
    return depth + 1

_FN_CACHE_MAX = 64


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs besides its channel (a Process argument)."""

    initializer: Callable[..., object] | None
    initargs: tuple[Any, ...]
    max_tasks: int | None
    #: Nesting depth of the pool this worker belongs to (see :data:`MAX_POOL_DEPTH`).
    depth: int = 1
    #: Variables capping native (BLAS/OpenMP) thread pools (see :func:`native_thread_env`).
    thread_env: tuple[tuple[str, str], ...] = ()
    #: ``(fd, inode)`` of descriptors inherited under fork that belong to the parent (other
    #: workers' channels, the dispatcher's wake pipe); closed only if still that file.
    close_fds: tuple[tuple[int, int], ...] = ()
    #: ``worker_state=True``: one dict, the first argument of every task function (and of
    #: the initializer and the exit hook).
    worker_state: bool = False
    #: Called when the worker exits normally (``Shutdown`` or retirement).
    worker_exit: Callable[..., object] | None = None
    #: ``insights=True``: the parent's ``time.monotonic()`` when it prepared this launch
    #: (the start of the worker's "starting" time); ``None``: no insights.
    launched: float | None = None
    #: The process that forks this worker applied :func:`apply_environment` already (a
    #: fork helper): the worker inherits it and skips it (each write to ``os.environ``
    #: costs a worker forked from a big process copy-on-write page faults).
    environment_ready: bool = False


#: Return values the C pickler alone encodes exactly (no procly reducer could apply).
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), complex})
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_dumps = pickle.dumps


def _send(sock: Any, msg: object) -> None:
    # A ResultItem goes as the bare tuple of its fields: the parent unpickles that in C,
    # without a Python-level constructor call per result (its hot path).
    wire = (msg.task_id, msg.ok, msg.value, msg.duration) if type(msg) is ResultItem else msg
    if type(wire) is tuple and type(wire[2]) in _PLAIN:
        send_frame(sock, _dumps(wire, _PROTOCOL))
        return
    try:
        data, buffers = _pickler.dumps_oob(wire)
        if buffers:
            send_frame(sock, data, buffers)
            return
    except Exception as exc:
        if not isinstance(msg, ResultItem):
            raise
        # (an exception was already checked by capture(): only a value can fail here)
        err = unpicklable_result(msg.value, exc) if msg.ok else capture(exc)
        data = _pickler.dumps((msg.task_id, False, err, msg.duration))
    send_frame(sock, data)


def _call(fn: Callable[..., Any], mode: int, data: Any) -> Any:
    if mode in (MODE_CALL, MODE_ARGS):
        return fn(*data)
    if mode == MODE_CALL_KW:
        return fn(*data[0], **data[1])
    if mode == MODE_MAP:
        return list(map(fn, data))
    return list(starmap(fn, data))


def _run(fn: Callable[..., Any], mode: int, payload: Any, buffers: Any) -> Any:
    if mode == MODE_ARGS:  # the arguments themselves (see MODE_ARGS)
        return fn(*payload)
    return _call(fn, mode, pickle.loads(payload, buffers=buffers))


def _run_measured(
    fn: Callable[..., Any], mode: int, payload: Any, buffers: Any, stats: _Stats
) -> Any:
    """:func:`_run`, charging the unpickling and the call to *stats* (``insights=True``)."""
    clock = time.perf_counter
    t0 = clock()
    data = payload if mode == MODE_ARGS else pickle.loads(payload, buffers=buffers)
    t1 = clock()
    stats.serializing += t1 - t0
    try:
        return _call(fn, mode, data)
    finally:
        stats.working += clock() - t1


class _Stats:
    """This worker's running totals for ``insights=True`` (see :mod:`._insights`)."""

    __slots__ = ("failed", "serializing", "starting", "tasks", "waiting", "working")

    def __init__(self, launched: float) -> None:
        # Made once the worker is ready to take work.  time.monotonic is CLOCK_MONOTONIC,
        # one clock for every process of the machine: the parent's stamp and this compare.
        self.starting = max(0.0, time.monotonic() - launched)
        self.waiting = self.working = self.serializing = 0.0
        self.tasks = self.failed = 0

    def report(self, final: bool = False) -> WorkerInsights:
        return WorkerInsights(
            os.getpid(),
            self.starting,
            self.waiting,
            self.working,
            self.serializing,
            self.tasks,
            self.failed,
            not final,
        )


def _context(fn: Any, mode: int, payload: Any, buffers: Any, state: Any = None) -> str:
    """What the failing task was called with, for the remote traceback (cold path)."""
    if isinstance(fn, BaseException) or fn is None:
        return ""
    if state is not None and isinstance(fn, partial):
        fn = fn.func  # worker_state=True: name the user's function, not the wrapper
    if mode == MODE_ARGS:
        return describe_call(fn, payload)
    try:
        args = pickle.loads(payload, buffers=buffers)
    except BaseException:
        return ""
    if mode == MODE_CALL_KW:
        args = (*args[0], *(f"{k}={v!r}" for k, v in args[1].items()))
    elif mode != MODE_CALL:
        first = list(args[:3])  # (a chunk may be a slice of a tuple or a range)
        return describe_call(fn, first, f"mapped over a chunk of {len(args)} items, first")
    return describe_call(fn, args)


def close_inherited(fds: tuple[tuple[int, int], ...]) -> None:
    """Close the parent's descriptors a forked child inherited (see ``WorkerSetup.close_fds``)."""
    for fd, inode in fds:
        try:
            if os.fstat(fd).st_ino == inode:
                os.close(fd)
        except OSError:
            pass


def worker_main(end: ChannelEnd, setup: WorkerSetup) -> None:
    """Serve tasks from *end* until told to stop (the worker process's target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not setup.environment_ready:
        apply_environment(setup)
    close_inherited(setup.close_fds)
    sock = end.socket()
    try:
        _serve(sock, setup)
    finally:
        sock.close()


def _with_state(fn: Callable[..., object], state: dict[str, Any] | None) -> Callable[..., Any]:
    return fn if state is None else partial(fn, state)


def _safe_send(sock: Any, msg: object) -> bool:
    """Send at exit, when the parent may be gone already; false if it could not be sent."""
    try:
        _send(sock, msg)
    except OSError:
        return False
    return True


def _exit_normally(sock: Any, setup: WorkerSetup, state: Any, stats: _Stats | None) -> None:
    """Run the ``worker_exit`` hook and send the last insights report.

    A hook that raises never stops the exit: its error goes to the parent (which warns);
    if the parent cannot be told, it is printed on this worker's stderr.
    """
    if setup.worker_exit is not None:
        try:
            _with_state(setup.worker_exit, state)()
        except BaseException as exc:
            failure = ExitHookFailed(os.getpid(), capture(exc))
            if not _safe_send(sock, failure):
                print(
                    f"procly: worker_exit hook raised in worker pid {os.getpid()}:"
                    f"{failure.error.traceback}",
                    file=sys.stderr,
                    flush=True,
                )
    if stats is not None:
        _safe_send(sock, stats.report(final=True))


def warn_exit_hook_failed(failure: ExitHookFailed) -> None:
    """Parent side: turn a worker's :class:`~._messages.ExitHookFailed` into a
    :class:`RuntimeWarning` (runs in the dispatcher thread, so a warnings filter that
    turns it into an error only gets it printed, never breaks the pool)."""
    exc = failure.error.exception
    text = (
        f"the worker_exit hook raised in worker pid {failure.pid}: "
        f"{type(exc).__name__}: {exc}{failure.error.traceback}"
    )
    try:
        warnings.warn(text, RuntimeWarning, stacklevel=1)
    except Exception:
        print(f"procly: {text}", file=sys.stderr, flush=True)


def _run_plain_batch(
    sock: Any,
    fn: Callable[..., Any],
    task_ids: tuple[int, ...],
    payloads: tuple[Any, ...],
    state: Any,
) -> None:
    """:func:`_serve`'s loop for the hot path of ``apply_async``/``submit``: one function
    (already unpickled), inline atom arguments (:data:`MODE_ARGS`), no insights, no
    ``max_tasks_per_child``.  The same results, sent the same way (one frame per task as
    soon as it ends), without the per-task work that only those features need."""
    clock = time.perf_counter
    fd = sock.fileno()
    plain = _PLAIN
    dumps = _dumps
    protocol = _PROTOCOL
    for task_id, args in zip(task_ids, payloads, strict=True):
        t0 = clock()
        try:
            value = fn(*args)
        except BaseException as exc:
            context = _context(fn, MODE_ARGS, args, (), state)
            _send(sock, ResultItem(task_id, False, capture(exc, context), clock() - t0))
            continue
        duration = clock() - t0
        if type(value) in plain:
            write_frame(fd, dumps((task_id, True, value, duration), protocol))
        else:
            _send(sock, ResultItem(task_id, True, value, duration))
        value = None  # free a large result before the next call


def _serve(sock: Any, setup: WorkerSetup) -> None:
    state: dict[str, Any] | None = {} if setup.worker_state else None
    if setup.initializer is not None:
        try:
            _with_state(setup.initializer, state)(*setup.initargs)
        except BaseException as exc:
            _send(sock, InitFailed(capture(exc)))
            return
    reader = FrameReader(sock)
    functions: dict[bytes, Callable[..., Any]] = {}
    remaining = setup.max_tasks
    done = 0
    clock = time.perf_counter
    stats = None if setup.launched is None else _Stats(setup.launched)
    if stats is not None:
        _send(sock, stats.report())
    while True:
        if stats is None:
            frame = reader.read_frame()
        else:
            t0 = clock()
            frame = reader.read_frame()
            stats.waiting += clock() - t0
        if frame is None:
            return  # the parent went away: no exit hook, nobody to report to
        if stats is not None:
            t0 = clock()
        if isinstance(frame, tuple):
            stream, oob = frame
            msg = pickle.loads(stream)
        else:
            msg = pickle.loads(frame)
            oob = []
        if stats is not None:
            stats.serializing += clock() - t0
        if isinstance(msg, Shutdown):
            _exit_normally(sock, setup, state, stats)
            return
        if not isinstance(msg, TaskBatch):  # pragma: no cover - protocol error
            raise TypeError(f"unexpected message {msg!r}")
        blobs = msg.functions
        if (
            stats is None
            and remaining is None
            and len(blobs) == 1
            and not msg.nbuffers
            and msg.modes.count(MODE_ARGS) == len(msg.modes)
            and blobs[0] in functions
        ):
            _run_plain_batch(sock, functions[blobs[0]], msg.task_ids, msg.payloads, state)
            continue
        fns: list[Callable[..., Any] | BaseException | None] = [None] * len(blobs)
        modes = msg.modes
        payloads = msg.payloads
        fn_index = msg.fn_index
        nbuffers = msg.nbuffers
        offset = 0
        last = len(msg.task_ids) - 1
        for i, task_id in enumerate(msg.task_ids):
            if nbuffers:
                count = nbuffers[i]
                bufs = oob[offset : offset + count]
                offset += count
            else:
                bufs = oob
            t0 = clock()
            value: Any = None
            fn: Any = None
            try:
                fi = fn_index[i]
                fn = fns[fi]
                if fn is None:
                    blob = blobs[fi]
                    fn = functions.get(blob)
                    if fn is None:
                        try:
                            fn = _with_state(pickle.loads(blob), state)
                        except BaseException as exc:
                            fn = exc
                        else:
                            if len(functions) >= _FN_CACHE_MAX:
                                functions.clear()
                            functions[blob] = fn
                        if stats is not None:  # t0 was just taken: this is the unpickling
                            stats.serializing += clock() - t0
                    fns[fi] = fn
                if isinstance(fn, BaseException):
                    raise fn
                if stats is None:
                    value = _run(fn, modes[i], payloads[i], bufs)
                else:
                    value = _run_measured(fn, modes[i], payloads[i], bufs, stats)
            except BaseException as exc:
                context = _context(fn, modes[i], payloads[i], bufs, state)
                result: ResultItem | None = ResultItem(
                    task_id, False, capture(exc, context), clock() - t0
                )
            else:
                duration = clock() - t0
                if stats is None and type(value) in _PLAIN:  # _send's hot path, inlined below
                    result = None
                else:
                    result = ResultItem(task_id, True, value, duration)
            if oob and offset == len(oob):
                # The batch's last use of its buffers: release the shared segments they
                # map *before* the result goes, so the parent can refill them at once.
                frame = None
                oob = bufs = []
            if result is None:
                send_frame(sock, _dumps((task_id, True, value, duration), _PROTOCOL))
            elif stats is None:
                _send(sock, result)
            else:
                stats.tasks += 1
                stats.failed += not result.ok
                if i == last:
                    # the report goes before the batch's last result: a caller holding
                    # a result sees its task counted (its result's pickling comes later)
                    _send(sock, stats.report())
                t0 = clock()
                _send(sock, result)
                stats.serializing += clock() - t0
            del result, value  # free a large result before the next call
            done += 1
            if remaining is not None and done >= remaining:
                _send(sock, Retiring(done))
                _exit_normally(sock, setup, state, stats)
                return
