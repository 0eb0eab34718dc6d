"""Big NumPy arguments and results through shared segments, for Pool and Executor (every
start method): values both ways, a worker that dies holding one, a result that outlives
its worker, an array a task keeps.  Nothing may be left in ``/dev/shm`` (the autouse leak
guard checks) nor as a descriptor of the parent."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

import procly
from _support.bigbuf import segment_fds
from procly._engine import _bigbuf
from procly.errors import WorkerCrashedError

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.skipif(not _bigbuf.available(), reason="needs memfd_create (Linux)")

MiB = 1 << 20
_KEPT: list[Any] = []


def through_segment(a: Any) -> bool:
    """Whether array *a* lives in a received shared segment (not a private copy)."""
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return isinstance(a, memoryview) and isinstance(a.obj, ctypes.Array)


def double(a: Any) -> Any:
    return a * 2


def received_mapped(a: Any) -> tuple[bool, float]:
    return through_segment(a), float(a[-1])


def die_holding(a: Any) -> None:
    if a[0] == 42:
        os.kill(os.getpid(), signal.SIGKILL)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def keep(a: Any) -> float:
    _KEPT.append(a)
    return float(a[0])


def kept_sum() -> float:
    return float(sum(float(a.sum()) for a in _KEPT))


@pytest.fixture(autouse=True)
def no_segment_left() -> Iterator[None]:
    _bigbuf.LENDER.drop_spares()
    yield
    _bigbuf.LENDER.drop_spares()
    assert _bigbuf.LENDER.stats() == (0, 0)
    assert segment_fds() == 0


def test_big_arrays_both_ways_through_segments(start_method: str) -> None:
    arrays = [np.full(2 * MiB // 8, float(i)) for i in range(6)]
    ctx = procly.get_context(start_method)
    with ctx.Pool(2) as pool:
        assert pool.map(received_mapped, arrays, chunksize=1) == [(True, float(i)) for i in range(6)]
        results = pool.map(double, arrays, chunksize=1)
        assert [float(r[0]) for r in results] == [2.0 * i for i in range(6)]
        assert all(r.shape == arrays[0].shape for r in results)
        assert all(through_segment(r) for r in results)
        results[0][:] = -1.0  # received arrays are writable, like unpickled ones
        assert float(results[0].sum()) == -float(results[0].size)
        del results
    with procly.ProcessPoolExecutor(2, mp_context=ctx) as ex:
        big = np.arange(3 * MiB // 8, dtype=np.float64)
        assert np.array_equal(ex.submit(double, big).result(), big * 2)


def test_a_worker_killed_holding_a_big_argument_fails_only_its_task(start_method: str) -> None:
    arrays = [np.full(MiB, i, dtype=np.uint8) for i in (1, 42, 3)]
    with procly.get_context(start_method).Pool(2) as pool:
        handles = [pool.apply_async(die_holding, (a,)) for a in arrays]
        outcomes = []
        for h in handles:
            try:
                outcomes.append(h.get(timeout=60))
            except WorkerCrashedError:
                outcomes.append("crashed")
        assert outcomes == [None, "crashed", None]
        assert pool.map(received_mapped, arrays, chunksize=1) == [(True, 1.0), (True, 42.0), (True, 3.0)]
    assert _bigbuf.LENDER.stats()[0] == 0  # nothing lent to the dead worker is kept


def test_a_big_result_outlives_the_worker_that_sent_it(start_method: str) -> None:
    with procly.get_context(start_method).Pool(1) as pool:
        result = pool.apply(double, (np.ones(2 * MiB // 8),))
        with pytest.raises(WorkerCrashedError):
            pool.apply(kill_self)
        assert through_segment(result)
        assert float(result.sum()) == 2.0 * result.size
        assert pool.apply(double, (np.ones(2 * MiB // 8),))[0] == 2.0  # the replacement
    del result


def test_an_argument_a_task_keeps_is_never_refilled(start_method: str) -> None:
    with procly.get_context(start_method).Pool(1) as pool:
        assert pool.apply(keep, (np.full(MiB, 1, dtype=np.uint8),)) == 1.0
        for value in (2, 3, 4):  # later arrays need segments too: not the kept one's
            assert pool.apply(received_mapped, (np.full(MiB, value, dtype=np.uint8),)) == (True, value)
        assert pool.apply(kept_sum) == float(MiB)
