"""Drop-in for :mod:`concurrent.futures.process`, plus procly's pool errors.

``as_completed``, ``wait`` and the rest of :mod:`concurrent.futures` work unchanged with the
futures :class:`ProcessPoolExecutor` returns; they are re-exported here for convenience.
"""

from __future__ import annotations

from concurrent.futures import ALL_COMPLETED as ALL_COMPLETED
from concurrent.futures import FIRST_COMPLETED as FIRST_COMPLETED
from concurrent.futures import FIRST_EXCEPTION as FIRST_EXCEPTION
from concurrent.futures import CancelledError as CancelledError
from concurrent.futures import Future as Future
from concurrent.futures import as_completed as as_completed
from concurrent.futures import wait as wait

from ._errors import TaskTimeoutError as TaskTimeoutError
from ._executor._executor import ProcessPoolExecutor as ProcessPoolExecutor
from ._executor._reusable import get_reusable_executor as get_reusable_executor
from ._futures_errors import BrokenProcessPool as BrokenProcessPool
from ._futures_errors import WorkerCrashedError as WorkerCrashedError

__all__ = (
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "BrokenProcessPool",
    "CancelledError",
    "Future",
    "ProcessPoolExecutor",
    "TaskTimeoutError",
    "WorkerCrashedError",
    "as_completed",
    "get_reusable_executor",
    "wait",
)
