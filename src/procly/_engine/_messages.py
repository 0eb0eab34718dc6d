"""The wire types of the engine: every message between the parent and a worker.

Each message is a frozen dataclass; there are no magic values or poison pills, a worker
tells a :class:`Shutdown` from a :class:`TaskBatch` by its type.  The classes pickle with
a compact ``__reduce__`` (their constructor and fields), which is both faster than the
default slots protocol and stable across Python versions.

Parent -> worker: :class:`TaskBatch`, :class:`Shutdown`.
Worker -> parent: :class:`ResultItem` (one per task, sent as soon as the task ends, so a
crash is always attributed to the one task that was running), :class:`InitFailed`,
:class:`Retiring`; with ``insights=True`` also
:class:`~._insights.WorkerInsights` (the public record of a worker's times doubles as
its report), and :class:`ExitHookFailed` when a ``worker_exit`` hook raised.

Why one pickle per call inside a batch (``TaskBatch.payloads``): the worker unpickles the
arguments of a call only right before running it, so a crash while unpickling them (a
``__setstate__`` that segfaults, say) is charged to that call and not to the whole batch.
Arguments that are all atoms (:data:`MODE_ARGS`) are the exception: unpickling them runs
no code, so they travel inline and spare a pickle and an unpickle per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = (
    "MODE_ARGS",
    "MODE_CALL",
    "MODE_CALL_KW",
    "MODE_MAP",
    "MODE_STARMAP",
    "ExitHookFailed",
    "InitFailed",
    "ResultItem",
    "Retiring",
    "Shutdown",
    "TaskBatch",
)

#: ``fn(*args)``; the payload pickles ``args``.
MODE_CALL = 0
#: ``fn(*args, **kwargs)``; the payload pickles ``(args, kwargs)``.
MODE_CALL_KW = 3
#: ``[fn(x) for x in chunk]``; the payload pickles the chunk (a list).
MODE_MAP = 1
#: ``[fn(*x) for x in chunk]``; the payload pickles the chunk (a list of tuples).
MODE_STARMAP = 2
#: ``fn(*args)``; the payload *is* ``args``, a tuple of atoms (int, str, ...) inline in the
#: batch's own pickle: unpickling atoms runs no code, so nothing can crash there that
#: should have been charged to the call (the hot path of ``apply_async``/``submit``).
MODE_ARGS = 4


@dataclass(frozen=True, slots=True)
class TaskBatch:
    """Several tasks for one worker, run in order (columns, one entry per task).

    ``functions`` are pickled callables, each sent once per batch however many tasks use
    it (``fn_index`` says which); a worker keeps a small cache of them keyed by these
    bytes.  ``modes`` holds one ``MODE_*`` byte per task and ``payloads`` the pickled
    argument data, or the arguments themselves (see the ``MODE_*`` constants).  Columns rather than one
    object per task: a batch of a thousand tiny tasks then pickles and unpickles as a few
    flat tuples.  Large buffers inside the arguments (NumPy arrays) travel out-of-band,
    after the frame's pickle, and are counted per task in ``nbuffers``.
    """

    functions: tuple[bytes, ...]
    task_ids: tuple[int, ...]
    fn_index: tuple[int, ...]
    modes: bytes
    payloads: tuple[bytes | tuple[Any, ...], ...]
    #: Out-of-band buffers of each payload (counts; the buffers follow the frame in order).
    nbuffers: tuple[int, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            TaskBatch,
            (
                self.functions,
                self.task_ids,
                self.fn_index,
                self.modes,
                self.payloads,
                self.nbuffers,
            ),
        )


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
    feeds the adaptive chunking and batching.  On the wire it is the bare tuple of its
    fields, ``(task_id, ok, value, duration)``: the parent unpickles that without a
    Python-level call per result.
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


@dataclass(frozen=True, slots=True)
class ExitHookFailed:
    """The ``worker_exit`` hook raised; ``error`` is a ``RemoteError``.  The worker still exits."""

    pid: int
    error: Any

    def __reduce__(self) -> tuple[Any, ...]:
        return (ExitHookFailed, (self.pid, self.error))
