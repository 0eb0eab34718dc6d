"""Drop-in for :mod:`multiprocessing.pool`: ``Pool``, ``ThreadPool``, ``AsyncResult`` and friends,
plus the types of ``Pool.insights()`` (``PoolInsights``, ``WorkerInsights``)."""

from __future__ import annotations

from ._engine._insights import PoolInsights as PoolInsights
from ._engine._insights import WorkerInsights as WorkerInsights
from ._errors import TimeoutError as TimeoutError
from ._pool._pool import Pool as Pool
from ._pool._results import ApplyResult as ApplyResult
from ._pool._results import AsyncResult as AsyncResult
from ._pool._results import IMapIterator as IMapIterator
from ._pool._results import IMapUnorderedIterator as IMapUnorderedIterator
from ._pool._results import MapResult as MapResult
from ._pool._threadpool import ThreadPool as ThreadPool

__all__ = (
    "ApplyResult",
    "AsyncResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "Pool",
    "PoolInsights",
    "ThreadPool",
    "TimeoutError",
    "WorkerInsights",
)
