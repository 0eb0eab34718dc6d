"""``Pool.insights()``: where each worker's time went (``insights=True``).

::

    worker (insights=True)                 dispatcher thread             caller
    times waiting / working / (un)pickling
    WorkerInsights when ready, with     ──> InsightsLog.record()  ──> insights()
    each batch, at a normal exit            (latest report per pid)    -> PoolInsights

* **Workers** keep running totals and send them as :class:`WorkerInsights` (cumulative,
  so a lost message loses nothing but freshness; the public record is the wire message).
* **The dispatcher thread** keeps the latest report of every worker the pool ever had,
  keyed by pid: workers that crashed, were killed or were retired stay in the log.
* **The caller** gets a frozen :class:`PoolInsights` snapshot.

Opt-in (``Pool(insights=True)``): timing every task costs a few clock reads per task and
one small message per batch, which the default hot path does not pay.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

__all__ = ("InsightsLog", "PoolInsights", "WorkerInsights")


@dataclass(frozen=True)
class WorkerInsights:
    """One worker's figures, in seconds, as of its last report.

    A worker reports when it is ready, with each batch of tasks (before the batch's last
    result) and when it exits normally; a worker that was killed or crashed therefore lacks only its last batch.

    * ``starting``: from the parent preparing its launch to the worker being ready (process
      start, imports, ``initializer``);
    * ``waiting``: idle, waiting for work from the parent;
    * ``working``: running task functions;
    * ``serializing``: unpickling tasks and arguments, pickling and sending results;
    * ``tasks``/``failed``: tasks run (a map chunk counts once) and how many raised;
    * ``alive``: False once the worker has ended (exited, retired, crashed or killed).

    It is also the worker's report on the wire (``alive=False`` in the one it sends as it
    exits normally), pickled compactly like the engine's other messages.
    """

    pid: int
    starting: float
    waiting: float
    working: float
    serializing: float
    tasks: int
    failed: int
    alive: bool

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, tuple(self.__dict__.values()))  # the fields, in order


def _rebuild(*fields: Any) -> WorkerInsights:
    # What a report unpickles through: by this module's path, so that pickling one in a
    # worker does not import the public module (procly.pool) the class names as its home.
    return WorkerInsights(*fields)


_COLUMNS = ("worker", "state", "starting", "waiting", "working", "serializing", "tasks", "failed")


@dataclass(frozen=True)
class PoolInsights:
    """Per-worker time accounting of a pool (``Pool.insights()``); ``str()`` is a table.

    ``workers`` lists every worker the pool has had, in start order; the properties sum
    them.
    """

    workers: tuple[WorkerInsights, ...]

    @property
    def starting(self) -> float:
        """Total seconds workers spent starting."""
        return sum(w.starting for w in self.workers)

    @property
    def waiting(self) -> float:
        """Total seconds workers spent waiting for work."""
        return sum(w.waiting for w in self.workers)

    @property
    def working(self) -> float:
        """Total seconds workers spent running task functions."""
        return sum(w.working for w in self.workers)

    @property
    def serializing(self) -> float:
        """Total seconds workers spent (un)pickling."""
        return sum(w.serializing for w in self.workers)

    @property
    def tasks(self) -> int:
        """Tasks run by all workers (a map chunk counts once)."""
        return sum(w.tasks for w in self.workers)

    @property
    def failed(self) -> int:
        """Tasks that raised, over all workers."""
        return sum(w.failed for w in self.workers)

    def __str__(self) -> str:
        rows: list[tuple[str, ...]] = [_COLUMNS]
        for w in self.workers:
            rows.append(
                (
                    str(w.pid),
                    "alive" if w.alive else "ended",
                    *(f"{v:.3f}s" for v in (w.starting, w.waiting, w.working, w.serializing)),
                    str(w.tasks),
                    str(w.failed),
                )
            )
        rows.append(
            (
                "total",
                f"{sum(w.alive for w in self.workers)} alive",
                *(f"{v:.3f}s" for v in (self.starting, self.waiting, self.working, self.serializing)),
                str(self.tasks),
                str(self.failed),
            )
        )
        widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
        lines = [
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)  # names left, numbers right
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
        return "\n".join(lines)


# Their public home (what pickle and reprs show); set after the class is made, because the
# dataclass machinery looks its own module up while making it.
WorkerInsights.__module__ = PoolInsights.__module__ = "procly.pool"


class InsightsLog:
    """The latest report (:class:`WorkerInsights`) of every worker of one engine.

    Written by the dispatcher thread (:meth:`record`), read by callers (:meth:`snapshot`);
    a lock keeps the two apart (both are rare: one report per batch, one snapshot per
    call).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[int, WorkerInsights] = {}  # insertion order: start order

    def record(self, report: WorkerInsights) -> None:
        with self._lock:
            self._latest[report.pid] = report

    def snapshot(self, live_pids: Iterable[int | None]) -> PoolInsights:
        """Every worker's last report; those not in *live_pids* (or that said they were
        exiting) are reported as ended."""
        live = set(live_pids)
        with self._lock:
            reports = list(self._latest.values())
        return PoolInsights(
            tuple(w if w.alive and w.pid in live else replace(w, alive=False) for w in reports)
        )
