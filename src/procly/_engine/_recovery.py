"""Worker loss, kills and the end of an engine (part of the dispatcher thread).

Split from :mod:`._dispatcher` for size; :class:`Recovery` is a mixin of
:class:`~._dispatcher.Engine` and runs only in its dispatcher thread.  The rules it applies:

* a worker that exits on its own: results it sent first still count; then the task it was
  running is run again if the pool allows ``retries`` and it has some left, else it fails
  with :class:`~procly.errors.WorkerCrashedError` (pid, exit code or signal),
  the tasks queued behind it go back to the front of the queue, and a new worker starts;
* a worker killed by the engine (timeout, cancel): the same, except that the running task
  fails with :class:`~procly.errors.TaskTimeoutError` or is dropped (cancelled);
* workers that keep dying before running anything break the pool instead of respawning
  forever;
* under ``fork``, replacements are forked by a fork helper (:mod:`._launcher`), started
  at the first loss, rather than by this process (whose every fork cost the dispatcher
  thread the fork and then copy-on-write faults);
* under ``fork``, once a worker has been lost the pool keeps one started *spare*: the
  next loss promotes it at once (no start-up latency while work waits), and the new spare
  is requested only after the dispatcher has handed out work again (one spare, not one
  per worker: with workers lost every 200 trivial tasks, a second spare measured slower,
  its start competing with the workers for the CPU);
* at close, an unused worker that has run no user code is killed rather than asked to
  exit (:meth:`Recovery._stop_unused`);
* breaking (an initializer failed) fails every unfinished task with
  :class:`~procly.errors.BrokenProcessPool`; terminating fails them with
  :class:`~procly.errors.PoolClosedError`.
"""

from __future__ import annotations

import select
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from .._errors import PoolClosedError, TaskTimeoutError
from .._futures_errors import BrokenProcessPool, WorkerCrashedError
from ._supervisor import Supervisor, WorkerSlot, describe_exit
from ._tasks import Task
from ._waiter import report_sink_error

if TYPE_CHECKING:
    from ._options import PoolOptions

__all__ = ("Recovery",)

RUN, CLOSING, TERMINATING, BROKEN, DONE = range(5)


class Recovery:
    """Worker-loss and shutdown handling of :class:`~._dispatcher.Engine` (a mixin)."""

    # state owned by Engine (see its constructor)
    options: PoolOptions
    _lock: threading.Lock
    _pending: deque[Task]
    _queue: deque[Task]
    _state: int
    _accepted: int
    _finished: int
    _sources: int
    _broken: BaseException | None
    _sup: Supervisor
    _dying: dict[int, WorkerSlot]
    _startup_failures: int
    _shutdown_sent: bool
    _want_spare: bool
    _helper_failed: bool
    _fn_modules: set[str]
    _poller: select.poll
    _fdmap: dict[int, tuple[int, WorkerSlot | None]]
    _stale: set[int]

    # provided by Engine
    def _pump(self, slot: WorkerSlot) -> None:
        raise NotImplementedError

    def _finish(self, task: Task, ok: bool, value: Any) -> None:
        raise NotImplementedError

    def _watch(self, slot: WorkerSlot) -> None:
        raise NotImplementedError

    def _unwatch_sock(self, slot: WorkerSlot) -> None:
        raise NotImplementedError

    def _unwatch_sentinel(self, slot: WorkerSlot) -> None:
        raise NotImplementedError

    # -- worker loss -----------------------------------------------------------------------
    def _on_exit(self, slot: WorkerSlot) -> None:
        if slot.dead:  # killed by us earlier: just reap
            self._unwatch_sentinel(slot)
            slot.proc.join(5.0)
            self._dying.pop(id(slot), None)
            return
        self._pump(slot)  # results sent before it died still count
        if slot.dead:
            return
        slot.proc.join(5.0)
        exitcode = slot.proc.exitcode
        self._unwatch_sentinel(slot)
        if slot.sock.fileno() != -1:
            self._unwatch_sock(slot)
        if slot in self._sup.spares:  # never served: nothing to fail; replaced when used
            self._sup.lose(slot)
            return
        retired = slot.tasks_left == 0 and not slot.inflight
        culprit, orphans = self._sup.lose(slot)
        if culprit is not None and getattr(slot.proc, "never_started", False):
            orphans.insert(0, culprit)  # it never ran (see HelperWorker): nothing to blame
            culprit = None
        self._queue.extendleft(reversed(orphans))
        if culprit is not None:
            if culprit.cancelled:
                self._finished += 1
            elif culprit.attempts < self.options.retries:
                culprit.attempts += 1  # retries=N: run it again, on a fresh worker
                self._queue.appendleft(culprit)
            else:
                how = describe_exit(exitcode)
                self._finish(
                    culprit,
                    False,
                    WorkerCrashedError(
                        f"the worker process (pid {slot.proc.pid}) running {culprit!r} "
                        f"died unexpectedly ({how})"
                        + (f" after {culprit.attempts} retries" if culprit.attempts else ""),
                        pid=slot.proc.pid,
                        exitcode=exitcode,
                    ),
                )
        elif not retired and not self._shutdown_sent and exitcode != 0 and slot.completed == 0:
            self._startup_failures += 1
            if self._startup_failures > 3 * self.options.processes + 3:
                self._break(
                    BrokenProcessPool(
                        f"workers keep dying before running any task (last: pid "
                        f"{slot.proc.pid}, {describe_exit(exitcode)})"
                    )
                )
                return
        self._replace()

    def _replace(self) -> None:
        with self._lock:
            state = self._state
            accepted = self._accepted
            sources = self._sources
        if state not in (RUN, CLOSING):
            return
        if state == CLOSING and not self._queue and self._finished == accepted and not sources:
            return
        if not self._shutdown_sent and self._ensure_helper():
            self._want_spare = True  # started by the dispatcher after its next hand-out
            if self._sup.promote() is not None:
                return  # the spare is watched already
        try:
            slot = self._sup.spawn()
        except BaseException as exc:
            err = BrokenProcessPool(f"could not start a replacement worker: {exc!r}")
            err.__cause__ = exc
            self._break(err)
            return
        self._watch(slot)

    def _ensure_helper(self) -> bool:
        """Have replacements forked by a fork helper (:mod:`._launcher`) rather than
        started by this process, where the launcher has one for the pool's start method;
        started at the first replacement, restarted if it died.  Without one (a launcher
        that has none, or it failed to start) the launcher starts them itself.  Returns
        whether a helper is running."""
        helper = self._sup.helper
        if helper is not None and not helper.broken:
            return True
        if helper is not None:
            self._helper_failed = helper.unusable
            self._drop_helper()
        if self._helper_failed:
            return False
        try:
            helper = self._sup.start_helper(tuple(sorted(self._fn_modules)))
        except Exception:  # an optimisation only: the pool works without it
            helper = None
        if helper is None:
            self._helper_failed = True
            return False
        fd = helper.fileno()
        self._poller.register(fd, select.POLLIN)
        self._fdmap[fd] = (3, None)
        return True

    def _drop_helper(self) -> None:
        """Stop the fork helper, if any (its remaining workers die with it)."""
        helper = self._sup.helper
        if helper is None:
            return
        self._sup.helper = None
        fd = helper.fileno()
        if fd >= 0 and fd in self._fdmap:
            self._poller.unregister(fd)
            del self._fdmap[fd]
            self._stale.add(fd)
        try:
            helper.close()
        except Exception:  # pragma: no cover - already gone
            pass

    def _on_helper(self) -> None:
        """The fork helper reported: handle the workers it says have ended."""
        helper = self._sup.helper
        if helper is not None:
            helper.pump()
        exited = self._sup.helper_exited  # (shared by every helper this pool had)
        while exited:
            proc = exited.pop(0)
            for slot in [*self._sup.workers(), *self._dying.values()]:
                if slot.proc is proc:
                    self._on_exit(slot)
                    break

    def _start_spare(self) -> None:
        """Fork the spare that :meth:`_replace` asked for (dispatcher loop, after sending)."""
        self._want_spare = False
        if self._sup.spares or self._shutdown_sent or self._broken is not None:
            return
        try:
            spare = self._sup.spawn(spare=True)
        except Exception:  # an optimisation only: the pool works without it
            return
        self._watch(spare)

    def _stop_unused(self, slot: WorkerSlot) -> bool:
        """At close, kill *slot*'s worker instead of asking it to exit if that makes no
        difference: under ``fork``, a worker that was never given a task, ran no
        initializer and has no exit hook or insights report has run none of the pool's
        user code, so it has nothing to finish -- and one still starting need not finish
        starting to stop (``close(); join()`` right after a pool start).  Not under spawn or
        forkserver: there a worker has imported the main module, whose output may still
        be buffered.  Returns whether it was killed."""
        o = self.options
        if (
            slot.completed
            or slot.inflight
            or o.start_method != "fork"
            or o.initializer is not None
            or o.worker_exit is not None
            or o.insights
        ):
            return False
        try:
            slot.proc.kill()
        except Exception:  # pragma: no cover - already gone
            pass
        self._unwatch_sock(slot)
        self._sup.lose(slot)
        self._dying[id(slot)] = slot
        return True

    def _kill(self, slot: WorkerSlot, task: Task, *, timed_out: bool) -> None:
        """Kill *slot*'s worker because its running *task* timed out or was cancelled."""
        try:
            slot.proc.kill()
        except Exception:  # pragma: no cover - already gone
            pass
        self._unwatch_sock(slot)
        culprit, orphans = self._sup.lose(slot)
        self._dying[id(slot)] = slot
        self._queue.extendleft(reversed(orphans))
        if culprit is not None:
            if culprit.cancelled or not timed_out:
                self._finished += 1
            else:
                self._finish(
                    culprit,
                    False,
                    TaskTimeoutError(
                        f"{culprit!r} exceeded its timeout of {culprit.timeout:g} s; its worker "
                        f"(pid {slot.proc.pid}) was killed and replaced"
                    ),
                )
        self._replace()

    def _drop_queued(self) -> None:
        kept: deque[Task] = deque()
        for task in self._queue:
            agree = getattr(task.sink, "cancel_queued", None)
            try:
                dropped = agree is not None and agree(task)
            except BaseException:
                report_sink_error()
                dropped = False
            if dropped:
                self._finished += 1
            else:
                kept.append(task)
        self._queue.clear()
        self._queue.extend(kept)

    def _handle_cancels(self, cancels: list[Task]) -> None:
        queue = self._queue
        for task in cancels:
            try:
                queue.remove(task)
            except ValueError:
                pass
            else:
                self._finished += 1
                continue
            for slot in self._sup.slots:
                if task in slot.inflight:
                    task.cancelled = True
                    if slot.inflight[0] is task:
                        self._kill(slot, task, timed_out=False)
                    break

    # -- ending ----------------------------------------------------------------------------
    def _all_tasks(self) -> list[Task]:
        tasks = list(self._queue)
        self._queue.clear()
        for slot in self._sup.slots:
            tasks.extend(slot.inflight)
            slot.inflight.clear()
        with self._lock:
            tasks.extend(self._pending)
            self._pending.clear()
        return tasks

    def _break(self, err: BaseException) -> None:
        with self._lock:
            self._broken = err
            if self._state in (RUN, CLOSING):
                self._state = BROKEN
        for task in self._all_tasks():
            if task.cancelled:
                continue
            exc = BrokenProcessPool(str(err))
            exc.__cause__ = err.__cause__
            self._finish(task, False, exc)

    def _terminate_now(self) -> None:
        self._kill_all()
        for task in self._all_tasks():
            if not task.cancelled:
                self._finish(task, False, PoolClosedError("the pool was terminated"))

    def _kill_all(self) -> None:
        for slot in [*self._sup.workers(), *self._dying.values()]:
            try:
                slot.proc.kill()
            except Exception:  # pragma: no cover
                pass

    def _reap_all(self) -> None:
        for slot in [*self._sup.workers(), *self._dying.values()]:
            try:
                slot.proc.join(5.0)
            except Exception:  # pragma: no cover
                pass
            try:
                slot.sock.close()
            except OSError:  # pragma: no cover
                pass
        self._sup.slots.clear()
        self._sup.spares.clear()
        self._dying.clear()
