"""Options of a pool, validated once at the boundary into one frozen object.

``Pool(...)`` and ``ProcessPoolExecutor(...)`` take their standard keywords plus procly's
extras (``task_timeout=``, ``retries=``, ``thread_limit=``, ``worker_state=``,
``worker_exit=``, ``insights=``); :func:`PoolOptions.build` checks them all and raises the error
the standard library raises for the same mistake, so the engine never re-checks them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ("PoolOptions", "check_timeout")


def check_timeout(timeout: float | None, what: str = "timeout") -> float | None:
    """Validate a per-task timeout: ``None`` or a positive finite number of seconds.

    Raises :class:`TypeError` for a non-number and :class:`ValueError` for a number that is
    not positive and finite.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(timeout).__name__}")
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


@dataclass(frozen=True)
class PoolOptions:
    """Everything the engine needs to know about a pool, checked.

    * ``processes``: number of workers (>= 1).
    * ``initializer``/``initargs``: run once in each worker before its first task.
    * ``max_tasks_per_child``: a worker is replaced after this many tasks (``None``: never).
    * ``task_timeout``: default per-task timeout in seconds (``None``: none).
    * ``retries``: how many times a task whose worker crashed is run again (default 0).
    * ``thread_limit``: cap on each worker's native (BLAS/OpenMP) thread pools; the
      default ``"auto"`` is ``cpu_count // processes`` (at least 1), ``None`` leaves them.
    * ``worker_state``: each worker keeps one dict across its tasks and passes it as the
      first positional argument of every task function (and of ``initializer`` and
      ``worker_exit``, so the initializer can fill it).
    * ``worker_exit``: called in each worker when it exits normally (after ``close()`` or
      ``shutdown()``, or when retired by ``max_tasks_per_child``); never after a kill.
    * ``insights``: workers measure where their time goes (see ``Pool.insights()``).
    * ``context``: the procly context whose ``Process`` starts the workers.
    * ``start_method``: its start method name (decides which inherited fds a worker closes).
    """

    processes: int
    initializer: Callable[..., object] | None = None
    initargs: tuple[Any, ...] = ()
    max_tasks_per_child: int | None = None
    task_timeout: float | None = None
    retries: int = 0
    thread_limit: int | None = None
    worker_state: bool = False
    worker_exit: Callable[..., object] | None = None
    insights: bool = False
    context: Any = field(default=None, compare=False)
    start_method: str = "fork"

    @classmethod
    def build(
        cls,
        *,
        processes: int | None,
        default_processes: int,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_child: int | None = None,
        task_timeout: float | None = None,
        retries: int = 0,
        thread_limit: int | str | None = "auto",
        worker_state: bool = False,
        worker_exit: Callable[..., object] | None = None,
        insights: bool = False,
        context: Any = None,
        start_method: str = "fork",
        processes_name: str = "processes",
        max_tasks_name: str = "maxtasksperchild",
    ) -> PoolOptions:
        """Check every option; raises :class:`ValueError`/:class:`TypeError` as the stdlib does.

        procly's own options raise :class:`TypeError` for a value of the wrong type
        (``worker_state``/``insights`` must be a bool, ``worker_exit`` a callable or None).
        """
        if processes is None:
            processes = default_processes
        if isinstance(processes, bool) or not isinstance(processes, int):
            raise TypeError(f"{processes_name} must be an int, not {type(processes).__name__}")
        if processes < 1:
            if processes_name == "processes":
                raise ValueError("Number of processes must be at least 1")
            raise ValueError(f"{processes_name} must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None and (
            isinstance(max_tasks_per_child, bool)
            or not isinstance(max_tasks_per_child, int)
            or max_tasks_per_child < 1
        ):
            if max_tasks_name == "maxtasksperchild":
                raise ValueError("maxtasksperchild must be a positive int or None")
            raise ValueError(f"{max_tasks_name} must be >= 1")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, not {retries!r}")
        for name, flag in (("worker_state", worker_state), ("insights", insights)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, not {type(flag).__name__}")
        if worker_exit is not None and not callable(worker_exit):
            raise TypeError(
                f"worker_exit must be a callable or None, not {type(worker_exit).__name__}"
            )
        limit: int | None
        if thread_limit == "auto":
            limit = max(1, (os.cpu_count() or 1) // processes)
        elif thread_limit is None:
            limit = None
        elif isinstance(thread_limit, int) and not isinstance(thread_limit, bool) and thread_limit >= 1:
            limit = thread_limit
        else:
            raise ValueError(f"thread_limit must be 'auto', None or an int >= 1, not {thread_limit!r}")
        return cls(
            processes=processes,
            initializer=initializer,
            initargs=tuple(initargs),
            max_tasks_per_child=max_tasks_per_child,
            task_timeout=check_timeout(task_timeout, "task_timeout"),
            retries=retries,
            thread_limit=limit,
            worker_state=worker_state,
            worker_exit=worker_exit,
            insights=insights,
            context=context,
            start_method=start_method,
        )
