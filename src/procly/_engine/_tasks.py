"""Parent-side task records and the sink protocol through which the engine reports.

A :class:`Task` is what ``Pool.apply_async``/``map`` and ``Executor.submit``/``map`` hand to
the engine.  It is never sent as such: the dispatcher encodes it into a
:class:`~._messages.CallItem`.  The engine reports back only through the task's sink:

* ``sink.task_started(task) -> bool`` when the task is handed to a worker; ``False`` means
  "cancelled meanwhile, do not run it" (``Future.set_running_or_notify_cancel``);
* ``sink.task_done(task, ok, value)`` exactly once, from the dispatcher thread, with the
  return value or the exception to raise in the caller.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

from ._messages import MODE_CALL

__all__ = ("EngineLike", "Task", "TaskSink")


class TaskSink(Protocol):
    """Receives the outcome of tasks (see the module docstring)."""

    def task_started(self, task: Task) -> bool: ...

    def task_done(self, task: Task, ok: bool, value: Any) -> None: ...


_ids = itertools.count(1)


class Task:
    """One unit of work: a call, or a chunk of a map.

    ``tag`` is free for the sink (a chunk index); ``timeout`` is the per-task limit in
    seconds, counted from the moment a worker starts it.  ``cancelled`` is set (by the
    dispatcher) when the caller cancelled a task already handed to a worker: its worker is
    killed as soon as it starts the task, and any result is dropped.
    """

    __slots__ = (
        "args",
        "attempts",
        "cancelled",
        "duration",
        "fn",
        "id",
        "kwargs",
        "mode",
        "sink",
        "size",
        "tag",
        "timeout",
        "wire",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: Any,
        kwargs: dict[str, Any] | None,
        sink: TaskSink,
        mode: int = MODE_CALL,
        timeout: float | None = None,
        *,
        tag: int = 0,
        size: int = 1,
    ) -> None:
        self.id = next(_ids)
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.sink = sink
        self.mode = mode
        self.timeout = timeout
        self.tag = tag
        self.size = size
        self.cancelled = False
        #: Times it was run again after its worker crashed (``retries=``).
        self.attempts = 0
        #: Seconds the worker spent running it (set before ``task_done`` when it ran).
        self.duration = 0.0
        #: ``(mode, payload, buffers)`` once serialized: a task handed out again (its
        #: worker died before starting it) is not pickled twice.
        self.wire: tuple[int, bytes | tuple[Any, ...], list[memoryview]] | None = None

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or repr(self.fn)
        return f"<Task {self.id} {name}>"


class EngineLike(Protocol):
    """What ``Pool`` and the lazy maps need of an engine (the process engine, or the
    thread engine behind ``ThreadPool``)."""

    @property
    def options(self) -> Any: ...

    @property
    def waiter(self) -> Any: ...

    @property
    def running(self) -> bool: ...

    @property
    def broken(self) -> BaseException | None: ...

    def closed_error(self) -> BaseException: ...

    def submit(self, tasks: Any) -> None: ...

    def submit_one(self, task: Task, *, from_source: bool = False) -> None: ...

    def add_source(self) -> None: ...

    def remove_source(self) -> None: ...

    def cancel(self, task: Task) -> None: ...

    def close(self) -> None: ...

    def terminate(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...
