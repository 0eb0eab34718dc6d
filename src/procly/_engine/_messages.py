"""The wire types of the engine: every message between the parent and a worker.

Each message is a frozen dataclass; there are no magic values or poison pills, a worker
tells a :class:`Shutdown` from a :class:`TaskBatch` by its type.  The classes pickle with
a compact ``__reduce__`` (their constructor and fields), which is both faster than the
default slots protocol and stable across Python versions.

Parent -> worker: :class:`TaskBatch`, :class:`Shutdown`.
Worker -> parent: :class:`ResultItem` (one per task, sent as soon as the task ends, so a
crash is always attributed to the one task that was running), :class:`InitFailed`,
:class:`Retiring`.

Why one pickle per call inside a batch (``CallItem.payload``): the worker unpickles the
arguments of a call only right before running it, so a crash while unpickling them (a
``__setstate__`` that segfaults, say) is charged to that call and not to the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = (
    "MODE_CALL",
    "MODE_MAP",
    "MODE_STARMAP",
    "CallItem",
    "InitFailed",
    "ResultItem",
    "Retiring",
    "Shutdown",
    "TaskBatch",
)

#: ``fn(*args, **kwargs)``; the payload pickles ``(args, kwargs)``.
MODE_CALL = 0
#: ``[fn(x) for x in chunk]``; the payload pickles the chunk (a list).
MODE_MAP = 1
#: ``[fn(*x) for x in chunk]``; the payload pickles the chunk (a list of tuples).
MODE_STARMAP = 2


@dataclass(frozen=True, slots=True)
class CallItem:
    """One task inside a :class:`TaskBatch`.

    ``function`` indexes ``TaskBatch.functions``; ``payload`` is the pickled argument data
    (see the ``MODE_*`` constants for its shape).
    """

    task_id: int
    function: int
    mode: int
    payload: bytes

    def __reduce__(self) -> tuple[Any, ...]:
        return (CallItem, (self.task_id, self.function, self.mode, self.payload))


@dataclass(frozen=True, slots=True)
class TaskBatch:
    """Several tasks for one worker, run in order.

    ``functions`` are pickled callables, each sent once per batch however many calls use
    it; a worker keeps a small cache of them keyed by these bytes.
    """

    functions: tuple[bytes, ...]
    calls: tuple[CallItem, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskBatch, (self.functions, self.calls))


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Tells a worker to exit once it has sent the results of everything it was given."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Shutdown, ())


@dataclass(frozen=True, slots=True)
class ResultItem:
    """The outcome of one task.

    ``ok`` true: ``value`` is the return value (a list for map/starmap chunks).  ``ok``
    false: ``value`` is a :class:`~procly._engine._remote_tb.RemoteError`.  ``duration`` is
    the seconds the worker spent running the function (not unpickling or pickling), which
    feeds the adaptive chunking and batching.
    """

    task_id: int
    ok: bool
    value: Any
    duration: float

    def __reduce__(self) -> tuple[Any, ...]:
        return (ResultItem, (self.task_id, self.ok, self.value, self.duration))


@dataclass(frozen=True, slots=True)
class InitFailed:
    """The worker's initializer raised; ``error`` is a ``RemoteError``.  The worker exits."""

    error: Any

    def __reduce__(self) -> tuple[Any, ...]:
        return (InitFailed, (self.error,))


@dataclass(frozen=True, slots=True)
class Retiring:
    """The worker reached ``max_tasks_per_child`` and exits after this message."""

    tasks_done: int

    def __reduce__(self) -> tuple[Any, ...]:
        return (Retiring, (self.tasks_done,))
