"""Worker bookkeeping: who holds which task, per-task deadlines, crash attribution.

Pure logic (no threads, no polling): the dispatcher calls it and does the I/O, so the
timeout and restart rules are unit-tested with an injected clock and a fake launcher.

Invariants (they make crash attribution exact):

* a worker runs the tasks it was given in order and reports each before starting the next,
  so ``slot.inflight[0]`` (the *head*) is the task it is running (or about to run);
* a task's timeout clock starts when it becomes the head, so time spent queued behind
  another task never counts against it;
* when a worker dies, the head is the one task that failed; the tasks behind it never
  started and go back to the queue (the *orphans*).
"""

from __future__ import annotations

import heapq
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ._channel import ChannelEnd, FrameReader, FrameWriter, channel_pair, close_end
from ._tasks import Task
from ._worker import WorkerSetup

__all__ = ("Launcher", "Supervisor", "WorkerProcess", "WorkerSlot")


class WorkerProcess(Protocol):
    """What the engine needs of a started worker process (a procly ``Process`` fits)."""

    @property
    def pid(self) -> int | None: ...

    @property
    def sentinel(self) -> int: ...

    @property
    def exitcode(self) -> int | None: ...

    def kill(self) -> None: ...

    def join(self, timeout: float | None = None) -> None: ...


class Launcher(Protocol):
    """Starts one worker process serving *end* (see :func:`._worker.worker_main`)."""

    def launch(self, end: ChannelEnd, setup: WorkerSetup) -> WorkerProcess: ...


class Helper(Launcher, Protocol):
    """A launcher of replacement workers that reports their exits itself (a fork helper,
    :class:`._launcher.ForkHelper`): its workers have no sentinel of their own."""

    exited: list[Any]
    broken: bool
    #: Set with ``broken`` when the helper refused to work: start no other.
    unusable: bool

    def fileno(self) -> int: ...

    def pump(self) -> None: ...

    def close(self) -> None: ...


class WorkerSlot:
    """One live worker as the parent sees it."""

    __slots__ = ("completed", "dead", "inflight", "proc", "reader", "sock", "tasks_left", "writer")

    def __init__(self, proc: WorkerProcess, sock: socket.socket, tasks_left: int | None) -> None:
        self.proc = proc
        self.sock = sock
        self.reader = FrameReader(sock)
        self.writer = FrameWriter(sock)
        self.inflight: deque[Task] = deque()
        #: Tasks this worker may still be given (``max_tasks_per_child``), ``None``: no limit.
        self.tasks_left = tasks_left
        self.completed = 0
        self.dead = False

    def __repr__(self) -> str:
        return f"<WorkerSlot pid={self.proc.pid} inflight={len(self.inflight)}>"


class Supervisor:
    """Owns the worker slots and the deadline heap of one engine."""

    def __init__(
        self,
        launcher: Launcher,
        make_setup: Callable[[tuple[tuple[int, int], ...]], WorkerSetup],
        max_tasks: int | None,
        clock: Callable[[], float],
        close_inherited: bool,
    ) -> None:
        self._launcher = launcher
        self._make_setup = make_setup
        self._max_tasks = max_tasks
        self._clock = clock
        self._close_inherited = close_inherited
        self.slots: list[WorkerSlot] = []
        #: Started workers not serving yet, promoted by :meth:`promote` when one is lost.
        self.spares: list[WorkerSlot] = []
        self._deadlines: list[tuple[float, int, Task, WorkerSlot]] = []
        #: Extra parent descriptors a forked worker must close (the dispatcher's wake pipe).
        self.parent_fds: tuple[int, ...] = ()
        #: Starts the workers once set (:meth:`start_helper`), instead of the launcher.
        self.helper: Helper | None = None
        #: Workers of any helper whose end it reported and the engine has not handled yet.
        self.helper_exited: list[Any] = []

    # -- workers ---------------------------------------------------------------------------
    def spawn(self, *, spare: bool = False) -> WorkerSlot:
        """Start one worker and return its slot (raises what the launcher raises).

        *spare*: keep it in :attr:`spares` instead of serving at once.
        """
        sock, end = channel_pair()
        launcher: Launcher = self._launcher
        close_fds: tuple[tuple[int, int], ...] = ()
        if self.helper is not None:
            launcher = self.helper  # (which knows the setup already)
        elif self._close_inherited:
            close_fds = self._parent_fds(sock.fileno())
        try:
            proc = launcher.launch(end, self._make_setup(close_fds))
        except BaseException:
            sock.close()
            close_end(end)
            raise
        close_end(end)
        slot = WorkerSlot(proc, sock, self._max_tasks)
        (self.spares if spare else self.slots).append(slot)
        return slot

    def _parent_fds(self, *extra: int) -> tuple[tuple[int, int], ...]:
        """What a child forked now must close of this process's descriptors (identified)."""
        fds = (*(s.sock.fileno() for s in (*self.slots, *self.spares)), *self.parent_fds, *extra)
        return tuple(_identified(fd) for fd in fds if fd >= 0)

    def start_helper(self, modules: tuple[str, ...] = ()) -> Helper | None:
        """Start a fork helper for the workers started from now on, if the launcher has
        one (``fork_helper``); ``None`` if not.  It imports *modules* (those of the task
        functions so far) before it forks.  Raises what starting it raises."""
        fork_helper = getattr(self._launcher, "fork_helper", None)
        if fork_helper is None:
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            inherited = self._parent_fds(ours.fileno()) if self._close_inherited else ()
            setup = self._make_setup(inherited)
            helper: Helper | None = fork_helper(setup, ours, theirs, modules)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        if helper is None:  # not for this start method
            ours.close()
            theirs.close()
            return None
        helper.exited = self.helper_exited
        self.helper = helper
        return helper

    def promote(self) -> WorkerSlot | None:
        """Move a spare into service; ``None`` if there is none."""
        if not self.spares:
            return None
        slot = self.spares.pop(0)
        self.slots.append(slot)
        return slot

    def workers(self) -> list[WorkerSlot]:
        """Every started worker, serving or spare."""
        return [*self.slots, *self.spares]

    def lose(self, slot: WorkerSlot) -> tuple[Task | None, list[Task]]:
        """Forget *slot* (its worker died or was killed).

        Returns ``(culprit, orphans)``: the task it was running, if any, and the tasks
        behind it, which never started.
        """
        slot.dead = True
        if slot in self.slots:
            self.slots.remove(slot)
        elif slot in self.spares:
            self.spares.remove(slot)
        inflight = slot.inflight
        culprit = inflight.popleft() if inflight else None
        orphans = list(inflight)
        inflight.clear()
        return culprit, orphans

    # -- tasks -----------------------------------------------------------------------------
    def assign(self, slot: WorkerSlot, tasks: list[Task]) -> Task | None:
        """Record that *tasks* were sent to *slot*; returns the new head if there is one."""
        was_idle = not slot.inflight
        slot.inflight.extend(tasks)
        if slot.tasks_left is not None:
            slot.tasks_left -= len(tasks)
        if was_idle and slot.inflight:
            return self.arm(slot)
        return None

    def complete(self, slot: WorkerSlot) -> tuple[Task, Task | None]:
        """The head of *slot* reported; returns ``(finished, new_head)``.

        Raises :class:`LookupError` if the worker reported with nothing in flight.
        """
        if not slot.inflight:
            raise LookupError(f"{slot!r} reported a result for no task")
        finished = slot.inflight.popleft()
        slot.completed += 1
        return finished, (self.arm(slot) if slot.inflight else None)

    def arm(self, slot: WorkerSlot) -> Task:
        """Start the deadline of *slot*'s new head (if it has a timeout); returns the head."""
        head = slot.inflight[0]
        if head.timeout is not None:
            heapq.heappush(self._deadlines, (self._clock() + head.timeout, head.id, head, slot))
        return head

    @staticmethod
    def _current(entry: tuple[float, int, Task, WorkerSlot]) -> bool:
        _, _, task, slot = entry
        return not slot.dead and bool(slot.inflight) and slot.inflight[0] is task

    def next_deadline(self) -> float | None:
        """The earliest deadline of a running task, or ``None``."""
        heap = self._deadlines
        while heap and not self._current(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def overdue(self) -> list[tuple[WorkerSlot, Task]]:
        """Running tasks past their deadline (each removed from the heap)."""
        now = self._clock()
        heap = self._deadlines
        found: list[tuple[WorkerSlot, Task]] = []
        while heap and (heap[0][0] <= now or not self._current(heap[0])):
            entry = heapq.heappop(heap)
            if self._current(entry):
                found.append((entry[3], entry[2]))
        return found

    def wait_timeout(self) -> float | None:
        """Seconds until the next deadline (for ``poll``), ``None`` for none."""
        deadline = self.next_deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - self._clock())


def _identified(fd: int) -> tuple[int, int]:
    """``(fd, inode)``: a forked worker closes the descriptor only if it is still that file
    (inode -1, never matched, for a descriptor that is already gone)."""
    try:
        return fd, os.fstat(fd).st_ino
    except OSError:
        return fd, -1


def describe_exit(exitcode: int | None) -> str:
    """``"signal SIGKILL"``, ``"exit code 3"`` or ``"unknown exit status"``."""
    if exitcode is None:
        return "unknown exit status"
    if exitcode < 0:
        import signal

        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"
