"""The engine: one dispatcher thread that feeds workers and collects their results.

::

    caller threads                 dispatcher thread (one per pool)            workers
    ───────────────                ─────────────────────────────────           ───────
    submit(tasks) ──> pending ──┐
    cancel(task)  ──> cancels ──┼─ wake pipe ─> poll([wake, sockets,  ──TaskBatch──> worker 1
    close/terminate ─> state ───┘                 sentinels], deadline) <─ResultItem── worker 2
                                                  │                                  ...
    sink.task_done(...) <─────────────────────────┘ (results, crashes, timeouts)

* **Caller threads** append :class:`~._tasks.Task` objects to ``pending`` under one lock
  and write to the wake pipe only if the dispatcher is asleep in ``poll`` (so a burst of
  submissions costs one system call, not one each).
* **The dispatcher thread** owns everything else: it moves pending tasks into its own
  queue, sends them to workers in batches (each worker gets at most about 5 ms of queued
  work, measured from reported task durations, so short tasks are batched and long ones are
  balanced), reads results with non-blocking reads (many per system call), reports each
  through its task's sink, enforces per-task deadlines, and handles worker deaths: the
  running task fails with :class:`~procly.errors.WorkerCrashedError`, the tasks queued
  behind it go back to the queue, and a new worker is started.
* **Workers** (:mod:`._worker`) run tasks in order and report each one.

The :class:`Engine` API is the narrow backend interface Pool and Executor use: start (the
constructor), :meth:`Engine.submit` a batch, results through sinks, :meth:`Engine.cancel`,
worker loss (reported as task failures), :meth:`Engine.close` / :meth:`Engine.terminate`.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import PoolClosedError, SerializationError
from .._futures_errors import BrokenProcessPool
from .._serial import _pickler
from ._channel import Frame
from ._insights import InsightsLog, PoolInsights, WorkerInsights
from ._messages import (
    MODE_ARGS,
    MODE_CALL,
    MODE_CALL_KW,
    ExitHookFailed,
    InitFailed,
    Retiring,
    Shutdown,
    TaskBatch,
)
from ._options import PoolOptions
from ._recovery import BROKEN, CLOSING, DONE, RUN, TERMINATING, Recovery
from ._remote_tb import RemoteError
from ._supervisor import Launcher, Supervisor, WorkerSlot
from ._tasks import Task
from ._waiter import ResultWaiter, report_sink_error
from ._worker import WorkerSetup, check_pool_depth, native_thread_env, warn_exit_hook_failed

__all__ = ("Engine", "ResultWaiter")

_RUN, _CLOSING, _TERMINATING, _BROKEN, _DONE = RUN, CLOSING, TERMINATING, BROKEN, DONE
_POLLIN = select.POLLIN | select.POLLHUP | select.POLLERR
#: Seconds of queued work a worker may hold (see the module docstring).
_TARGET_QUEUE_S = 0.005
_MAX_PER_WORKER = 64
#: Longest that waiting callers are left unwoken while results keep arriving.
_NOTIFY_DELAY_S = 0.002
_SHUTDOWN_FRAME = pickle.dumps(Shutdown(), pickle.HIGHEST_PROTOCOL)
_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})
_NO_VIEWS: list[memoryview] = []  # shared, never mutated (extend() only reads it)


class _Registry:
    """The live engines, so that interpreter exit kills their workers (the one registry).

    ``reset()`` forgets them all (tests only).
    """

    def __init__(self) -> None:
        self.engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        atexit.register(self.terminate_all)

    def terminate_all(self) -> None:
        for engine in list(self.engines):
            engine.terminate()

    def reset(self) -> None:
        self.engines = weakref.WeakSet()


_REGISTRY = _Registry()


class Engine(Recovery):
    """A pool of worker processes running :class:`~._tasks.Task` objects.

    Raises from the constructor whatever starting a worker raises.  :meth:`submit` raises
    :class:`~procly.errors.PoolClosedError` after :meth:`close`/:meth:`terminate` and
    :class:`~procly.errors.BrokenProcessPool` once the pool is broken (a worker's
    initializer failed, or workers die faster than they can be replaced).
    """

    def __init__(
        self,
        options: PoolOptions,
        launcher: Launcher,
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "procly-pool",
    ) -> None:
        self.options = options
        self._depth = check_pool_depth()  # RuntimeError when nested too deep
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: deque[Task] = deque()
        self._cancels: list[Task] = []
        self._state = _RUN
        self._accepted = 0
        self._finished = 0  # dispatcher thread only
        self._delivered = False  # dispatcher thread only: something to notify waiters of
        self._delivered_at: float | None = None  # dispatcher thread only: since when
        self.waiter = ResultWaiter()
        self._sleeping = False
        self._signalled = False
        self._broken: BaseException | None = None
        self._avg: float | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._sup = Supervisor(
            launcher,
            self._setup,
            options.max_tasks_per_child,
            clock,
            close_inherited=options.start_method == "fork",
        )
        self._sup.parent_fds = (self._wake_r, self._wake_w)
        self._dying: dict[int, WorkerSlot] = {}
        self._startup_failures = 0
        self._shutdown_sent = False
        self._sources = 0  # open lazy maps that may still submit after close()
        self._cancel_queued = False
        self._want_spare = False  # dispatcher thread only (see _recovery)
        self._insights = InsightsLog() if options.insights else None
        self._helper_failed = False  # dispatcher thread only (see _recovery)
        #: Modules of the task functions sent so far: a fork helper imports them before it
        #: forks, so its workers need not (dispatcher thread only, see _recovery).
        self._fn_modules: set[str] = set()
        try:
            for _ in range(options.processes):
                self._sup.spawn()
        except BaseException:
            self._kill_all()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        _REGISTRY.engines.add(self)

    def _setup(self, close_fds: tuple[tuple[int, int], ...]) -> WorkerSetup:
        o = self.options
        return WorkerSetup(
            o.initializer,
            o.initargs,
            o.max_tasks_per_child,
            self._depth,
            native_thread_env(o.thread_limit),
            close_fds,
            worker_state=o.worker_state,
            worker_exit=o.worker_exit,
            launched=time.monotonic() if o.insights else None,
        )

    # -- caller side -----------------------------------------------------------------------
    @property
    def processes(self) -> int:
        return self.options.processes

    @property
    def running(self) -> bool:
        return self._state == _RUN

    @property
    def broken(self) -> BaseException | None:
        return self._broken

    def insights(self) -> PoolInsights:
        """Per-worker time accounting (see :mod:`._insights`); :class:`ValueError` unless
        the pool was made with ``insights=True``."""
        if self._insights is None:
            raise ValueError("insights are off: create the pool with insights=True")
        return self._insights.snapshot(s.proc.pid for s in self._sup.workers())

    def closed_error(self) -> BaseException:
        if self._broken is not None:
            err = BrokenProcessPool(str(self._broken))
            err.__cause__ = self._broken.__cause__
            return err
        return PoolClosedError("Pool not running")

    def _wake_locked(self) -> None:
        if self._sleeping and not self._signalled:
            self._signalled = True
            try:
                os.write(self._wake_w, b"!")
            except OSError:  # pragma: no cover - pipe full means a wake-up is pending anyway
                pass

    def submit(self, tasks: Iterable[Task]) -> None:
        """Queue *tasks*; their outcomes arrive through their sinks."""
        with self._lock:
            if self._state != _RUN:
                raise self.closed_error()
            before = len(self._pending)
            self._pending.extend(tasks)
            self._accepted += len(self._pending) - before
            self._wake_locked()

    def submit_one(self, task: Task, *, from_source: bool = False) -> None:
        """Queue one task (the hot path of ``apply_async``/``submit``).

        *from_source*: the task comes from an open lazy map (:meth:`add_source`), which may
        keep feeding after :meth:`close`, as the standard library's ``imap`` does.
        """
        with self._lock:
            if self._state != _RUN and not (from_source and self._state == _CLOSING):
                raise self.closed_error()
            self._pending.append(task)
            self._accepted += 1
            if self._sleeping and not self._signalled:
                self._wake_locked()

    def add_source(self) -> None:
        """Register a lazy map that will feed tasks; :meth:`close` waits for it to end."""
        with self._lock:
            if self._state != _RUN:
                raise self.closed_error()
            self._sources += 1

    def remove_source(self) -> None:
        """The lazy map registered with :meth:`add_source` will submit nothing more."""
        with self._lock:
            self._sources -= 1
            self._wake_locked()

    def cancel(self, task: Task) -> None:
        """Stop *task*: drop it if queued, kill its worker if it is running.

        Its sink hears nothing more about it (the caller marked it cancelled).
        """
        with self._lock:
            if self._state in (_DONE,):
                return
            self._cancels.append(task)
            self._wake_locked()

    def cancel_queued(self) -> None:
        """Cancel every task not yet handed to a worker whose sink agrees.

        A sink agrees through a ``cancel_queued(task) -> bool`` method (executor futures);
        tasks of other sinks stay queued.  Done by the dispatcher soon after this call.
        """
        with self._lock:
            self._cancel_queued = True
            self._wake_locked()

    def close(self) -> None:
        """Accept no more tasks; workers exit once every accepted task is done."""
        with self._lock:
            if self._state == _RUN:
                self._state = _CLOSING
            self._wake_locked()

    def terminate(self) -> None:
        """Kill the workers now; unfinished tasks fail with ``PoolClosedError``.  Waits."""
        with self._lock:
            if self._state in (_RUN, _CLOSING):
                self._state = _TERMINATING
            self._wake_locked()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the dispatcher (and so every worker) to finish; true if it did."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("cannot join the pool from one of its own callbacks")
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- dispatcher thread -----------------------------------------------------------------
    def _run(self) -> None:
        self._queue: deque[Task] = deque()
        self._poller = select.poll()
        self._fdmap: dict[int, tuple[int, WorkerSlot | None]] = {}
        self._stale: set[int] = set()
        self._poller.register(self._wake_r, select.POLLIN)
        self._fdmap[self._wake_r] = (0, None)
        for slot in self._sup.workers():
            self._watch(slot)
        try:
            self._loop()
        except BaseException as exc:  # a bug here must fail tasks, never hang callers
            err = BrokenProcessPool(f"the pool's dispatcher thread failed: {exc!r}")
            err.__cause__ = exc
            self._break(err)
            report_sink_error()
        finally:
            self._kill_all()
            self._reap_all()
            self._drop_helper()
            with self._lock:
                self._state = _DONE
            self._delivered = True
            self._notify_done()
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)

    def _watch(self, slot: WorkerSlot) -> None:
        fd = slot.sock.fileno()
        self._poller.register(fd, select.POLLIN)
        self._fdmap[fd] = (1, slot)
        sentinel = slot.proc.sentinel
        if sentinel >= 0:  # (a fork helper's workers have none: the helper reports exits)
            self._poller.register(sentinel, select.POLLIN)
            self._fdmap[sentinel] = (2, slot)

    def _unwatch_sock(self, slot: WorkerSlot) -> None:
        try:
            fd = slot.sock.fileno()
        except OSError:  # pragma: no cover
            return
        if fd >= 0 and self._fdmap.get(fd, (0, None))[1] is slot:
            self._poller.unregister(fd)
            del self._fdmap[fd]
            self._stale.add(fd)
        slot.sock.close()

    def _unwatch_sentinel(self, slot: WorkerSlot) -> None:
        sentinel = slot.proc.sentinel
        if self._fdmap.get(sentinel, (0, None))[1] is slot:
            self._poller.unregister(sentinel)
            del self._fdmap[sentinel]
            self._stale.add(sentinel)

    def _loop(self) -> None:
        queue = self._queue
        lock = self._lock
        while True:
            with lock:
                if self._pending:
                    queue.extend(self._pending)
                    self._pending.clear()
                cancels = self._cancels
                if cancels:
                    self._cancels = []
                cancel_queued = self._cancel_queued
                self._cancel_queued = False
                state = self._state
                accepted = self._accepted
                sources = self._sources
            if cancels:
                self._handle_cancels(cancels)
            if cancel_queued:
                self._drop_queued()
            if state == _TERMINATING:
                self._terminate_now()
                return
            if self._broken is not None:
                return
            if queue and not self._shutdown_sent:
                self._dispatch()
            if self._want_spare:
                self._start_spare()
            if state == _CLOSING and not queue and self._finished == accepted and not sources:
                if not self._shutdown_sent:
                    self._shutdown_sent = True
                    for slot in self._sup.workers():
                        if self._stop_unused(slot):
                            continue
                        slot.writer.queue(_SHUTDOWN_FRAME)
                        self._flush(slot)
                if not self._sup.slots and not self._sup.spares and not self._dying:
                    return
            events = self._notify_or_poll()
            drain = False
            if events is None:
                timeout = self._sup.wait_timeout()
                with lock:
                    if self._pending or self._cancels or self._state != state:
                        timeout = 0.0
                    else:
                        self._sleeping = True
                try:
                    events = self._poller.poll(None if timeout is None else timeout * 1000.0 + 0.5)
                finally:
                    with lock:
                        self._sleeping = False
                        drain = self._signalled
                        self._signalled = False
            if drain:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
            # A descriptor closed while handling this batch may already be reused by a
            # new worker: its event belongs to the old one, skip it (poll reports again).
            stale = self._stale
            stale.clear()
            for fd, ev in events:
                if fd in stale:
                    continue
                kind, owner = self._fdmap.get(fd, (-1, None))
                if owner is None:
                    if kind == 3:
                        self._on_helper()
                    continue
                if kind == 1:
                    if ev & select.POLLOUT:
                        self._flush(owner)
                    if ev & _POLLIN:
                        self._pump(owner)
                elif kind == 2:
                    self._on_exit(owner)
            if self._broken is not None:
                return
            if self._sup.helper_exited:  # read while waiting for a worker
                self._on_helper()
            for slot, task in self._sup.overdue():
                self._kill(slot, task, timed_out=True)

    # -- sending ---------------------------------------------------------------------------
    def _limit(self) -> int:
        """Tasks a worker may hold: about :data:`_TARGET_QUEUE_S` of work at the measured
        cost per item, counted in tasks the size of the next one (a map's chunk holds many
        items), and at least 2 so that a worker never waits for its next task."""
        avg = self._avg
        if avg is None:
            return 2
        per_task = avg * self._queue[0].size
        return max(2, min(_MAX_PER_WORKER, int(_TARGET_QUEUE_S / max(per_task, 1e-7))))

    def _dispatch(self) -> None:
        # A kill while sending (a cancelled head) requeues tasks and starts a new worker
        # the round did not see: go round again until a round sends nothing.
        while self._queue and self._dispatch_round():
            pass

    def _dispatch_round(self) -> bool:
        queue = self._queue
        limit = self._limit()
        low = limit // 2
        slots = [
            s
            for s in self._sup.slots
            if len(s.inflight) <= low and (s.tasks_left is None or s.tasks_left > 0)
        ]
        if not slots:
            return False
        slots.sort(key=lambda s: len(s.inflight))
        if queue[0].size > 1:
            return self._deal_chunks(slots, limit)
        share = -(-len(queue) // len(slots))
        for slot in slots:
            if not queue:
                break
            room = limit - len(slot.inflight)
            if slot.tasks_left is not None:
                room = min(room, slot.tasks_left)
            n = min(room, share, len(queue))
            if n <= 0 or slot.dead:
                continue
            batch = [queue.popleft() for _ in range(n)]
            self._send_batch(slot, batch)
        return True

    def _deal_chunks(self, slots: list[WorkerSlot], limit: int) -> bool:
        """Hand out the chunks of a map one per frame, round-robin: each worker starts on
        its first chunk while the next ones are still being pickled, and with few chunks
        per worker the faster one takes the rest (as with the standard library's shared
        queue).  True if something was sent."""
        queue = self._queue
        sent = False
        dealt = True
        while dealt:
            dealt = False
            for slot in slots:
                if not queue:
                    return True
                if slot.dead or len(slot.inflight) >= limit or slot.tasks_left == 0:
                    continue
                self._send_batch(slot, [queue.popleft()])
                dealt = sent = True
        return sent

    def _send_batch(self, slot: WorkerSlot, batch: list[Task]) -> None:
        functions: list[bytes] = []
        index: dict[int, int] = {}
        ids: list[int] = []
        fn_index: list[int] = []
        modes = bytearray()
        payloads: list[bytes | tuple[Any, ...]] = []
        nbuffers: list[int] = []
        buffers: list[memoryview] = []
        sent: list[Task] = []
        atoms = _ATOMS.issuperset
        for task in batch:
            try:
                started = task.sink.task_started(task)
            except BaseException:
                report_sink_error()
                started = False
            if not started:
                self._finished += 1
                continue
            fn = task.fn
            fi = index.get(id(fn))
            args = task.args
            if (
                task.mode == MODE_CALL
                and type(args) is tuple
                and not task.kwargs
                and atoms(map(type, args))
                and fi is not None
            ):
                # the hot path of apply_async/submit: atoms travel inline (MODE_ARGS)
                mode = MODE_ARGS
                payload: bytes | tuple[Any, ...] = args
                views = _NO_VIEWS
            else:
                try:
                    if fi is None:
                        blob = _pickler.dumps(fn)
                        fi = index[id(fn)] = len(functions)
                        functions.append(blob)
                        module = getattr(fn, "__module__", None)
                        if type(module) is str:
                            self._fn_modules.add(module)
                    mode, payload, views = self._encode(task)
                except SerializationError as exc:
                    self._finish(task, False, exc)
                    continue
                except Exception as exc:  # pragma: no cover - dumps wraps pickling errors
                    err = SerializationError(f"cannot serialize {task!r}: {exc}")
                    self._finish(task, False, err)
                    continue
            ids.append(task.id)
            fn_index.append(fi)
            modes.append(mode)
            payloads.append(payload)
            if views:
                buffers.extend(views)
            nbuffers.append(len(views))
            sent.append(task)
        if not sent:
            return
        msg = TaskBatch(
            tuple(functions),
            tuple(ids),
            tuple(fn_index),
            bytes(modes),
            tuple(payloads),
            tuple(nbuffers) if buffers else (),
        )
        frame = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
        head = self._sup.assign(slot, sent)
        slot.writer.queue(frame, buffers)
        self._flush(slot)
        if head is not None and head.cancelled:
            self._kill(slot, head, timed_out=False)

    @staticmethod
    def _encode(task: Task) -> tuple[int, bytes | tuple[Any, ...], list[memoryview]]:
        """``(mode, payload, buffers)`` of *task*, kept on it: a task handed out again (its
        worker died before starting it) is not pickled twice.  Raises
        :class:`~procly.errors.SerializationError`."""
        wire = task.wire
        if wire is not None:
            return wire
        args = task.args
        mode = task.mode
        if mode == MODE_CALL and type(args) is tuple and not task.kwargs:
            if _ATOMS.issuperset(map(type, args)):
                return MODE_ARGS, args, _NO_VIEWS  # (cheap: not kept)
            payload, views = _pickler.dumps_oob(args)
        elif mode == MODE_CALL and task.kwargs:
            mode = MODE_CALL_KW
            payload, views = _pickler.dumps_oob((args, task.kwargs))
        else:
            payload, views = _pickler.dumps_oob(args)
        task.wire = (mode, payload, views)
        return task.wire

    def _flush(self, slot: WorkerSlot) -> None:
        if slot.dead:
            return
        try:
            done = slot.writer.flush()
        except OSError:
            return  # the worker is gone; its sentinel will say so
        fd = slot.sock.fileno()
        self._poller.modify(fd, select.POLLIN if done else select.POLLIN | select.POLLOUT)

    # -- receiving -------------------------------------------------------------------------
    def _pump(self, slot: WorkerSlot) -> None:
        reader = slot.reader
        frames = reader.frames
        while not slot.dead:
            try:
                alive = reader.pump()
            except BlockingIOError:
                return
            except OSError:
                alive = False
            if frames:
                self._on_frames(slot, frames)
            if not alive:
                if not slot.dead:
                    self._unwatch_sock(slot)
                return

    def _on_frames(self, slot: WorkerSlot, frames: deque[Frame]) -> None:
        """Handle the received *frames* of *slot* (the hot path: one result per task).

        A result is the bare tuple ``(task_id, ok, value, duration)`` (see
        :class:`~._messages.ResultItem`); other messages go to :meth:`_on_message`.
        """
        inflight = slot.inflight
        loads = pickle.loads
        avg = self._avg
        done = 0
        try:
            while frames and not slot.dead:
                frame = frames.popleft()
                try:
                    if isinstance(frame, tuple):
                        msg = loads(frame[0], buffers=frame[1])
                    else:
                        msg = loads(frame)
                except BaseException as exc:
                    if not inflight:
                        continue
                    bad = SerializationError(
                        f"the result of {inflight[0]!r} could not be unpickled in the "
                        f"parent: {type(exc).__name__}: {exc}"
                    )
                    msg = (inflight[0].id, False, RemoteError(bad, ""), 0.0)
                if type(msg) is not tuple:
                    self._on_message(slot, msg)
                    continue
                if not inflight:
                    raise LookupError(f"{slot!r} reported a result for no task")
                task = inflight.popleft()  # (the supervisor's complete(), inlined)
                done += 1
                head = inflight[0] if inflight else None
                if head is not None and head.timeout is not None:
                    self._sup.arm(slot)
                duration = task.duration = msg[3]
                size = task.size
                d = duration / size if size > 1 else duration
                avg = d if avg is None else avg * 0.9 + d * 0.1
                if task.cancelled:
                    self._finished += 1
                elif msg[1]:  # self._finish(task, True, msg[2]), inlined
                    self._finished += 1
                    self._delivered = True
                    task.wire = None
                    try:
                        task.sink.task_done(task, True, msg[2])
                    except BaseException:
                        report_sink_error()
                else:
                    self._finish(task, False, msg[2].rebuild())
                if head is not None and head.cancelled:
                    self._avg = avg
                    self._kill(slot, head, timed_out=False)
        finally:
            self._avg = avg
            if done:
                slot.completed += done
                self._startup_failures = 0

    def _on_message(self, slot: WorkerSlot, msg: object) -> None:
        if type(msg) is InitFailed:
            cause = msg.error.rebuild()
            err = BrokenProcessPool(
                f"a worker's initializer raised {type(cause).__name__}: {cause}; "
                "the pool is not usable anymore"
            )
            err.__cause__ = cause
            self._break(err)
        elif type(msg) is Retiring:
            slot.tasks_left = 0
        elif type(msg) is WorkerInsights:
            if self._insights is not None:
                self._insights.record(msg)
        elif type(msg) is ExitHookFailed:
            warn_exit_hook_failed(msg)

    def _notify_or_poll(self) -> list[tuple[int, int]] | None:
        """Wake the callers waiting for results delivered this round, unless more results
        are already waiting to be read: then return those events, and notify later.

        Waking a caller costs its thread a context switch and a turn at the GIL, taken
        from the dispatcher while workers wait for it: so while results keep coming, the
        callers are woken once the dispatcher catches up (or :data:`_NOTIFY_DELAY_S` after
        the first undelivered result), not once per round.
        """
        if not self._delivered:
            return None
        if not self.waiter.waiters:
            self._delivered = False
            return None
        now = time.monotonic()
        since = self._delivered_at
        if since is None:
            since = self._delivered_at = now
        if now - since < _NOTIFY_DELAY_S:
            events = self._poller.poll(0)
            if events:
                return events
        self._notify_done()
        return None

    def _notify_done(self) -> None:
        self._delivered_at = None
        if self._delivered:
            self._delivered = False
            self.waiter.notify()

    def _finish(self, task: Task, ok: bool, value: Any) -> None:
        self._finished += 1
        self._delivered = True
        task.wire = None  # a future may keep its task: not a second copy of the arguments
        try:
            task.sink.task_done(task, ok, value)
        except BaseException:
            report_sink_error()
