"""The standard ``Pool`` behaviour, under every start method."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import procly
from procly.errors import PoolClosedError, RemoteTraceback, SerializationError
from procly.pool import AsyncResult, Pool


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def fail(x: object) -> None:
    raise ValueError(f"bad {x}")


def pid_of(_: object = None) -> int:
    return os.getpid()


def sleep_forever() -> None:
    time.sleep(3600)


_INIT_VALUE: list[Any] = []


def remember(value: Any) -> None:
    _INIT_VALUE.append(value)


def read_init() -> Any:
    return _INIT_VALUE[-1] if _INIT_VALUE else None


def raise_system_exit() -> None:
    raise SystemExit(3)


def return_lock() -> Any:
    return threading.Lock()


@pytest.fixture
def pool(start_method: str) -> Iterator[Pool]:
    with procly.get_context(start_method).Pool(2) as p:
        yield p


def test_apply_and_apply_async(pool: Pool) -> None:
    assert pool.apply(add, (1, 2)) == 3
    assert pool.apply(add, (), {"a": 2, "b": 5}) == 7
    result = pool.apply_async(square, (7,))
    assert isinstance(result, AsyncResult)
    assert result.get(timeout=30) == 49
    assert result.ready() and result.successful()


def test_map_starmap_imap(pool: Pool) -> None:
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    assert pool.map(square, range(20), chunksize=3) == [x * x for x in range(20)]
    assert pool.map(square, []) == []
    assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
    assert list(pool.imap(square, range(50))) == [x * x for x in range(50)]
    assert list(pool.imap(square, range(50), chunksize=7)) == [x * x for x in range(50)]
    assert sorted(pool.imap_unordered(square, range(50))) == [x * x for x in range(50)]
    assert list(pool.imap(square, [])) == []
    assert pool.map_async(square, (x for x in range(5))).get(30) == [0, 1, 4, 9, 16]
    assert pool.starmap_async(add, [(1, 1)]).get(30) == [2]


def test_map_slices_ranges_and_tuples(pool: Pool) -> None:
    # ranges, lists and tuples are chunked by slicing (a range's chunks travel as ranges)
    assert pool.map(square, range(3, 1000, 7), chunksize=10) == [x * x for x in range(3, 1000, 7)]
    assert pool.map(square, range(10, 0, -3)) == [100, 49, 16, 1]
    assert pool.map(square, tuple(range(25)), chunksize=4) == [x * x for x in range(25)]
    assert pool.starmap(add, ((1, 2), (3, 4), (5, 6)), chunksize=2) == [3, 7, 11]
    with pytest.raises(ValueError) as info:
        pool.map(fail, range(5, 10), chunksize=5)
    assert "mapped over a chunk of 5 items, first [5, 6, 7]" in str(info.value.__cause__)


def test_lambdas_and_closures_run(pool: Pool) -> None:
    k = 10
    assert pool.apply(lambda x: x + k, (1,)) == 11
    assert pool.map(lambda x: x * k, [1, 2]) == [10, 20]


def test_exception_is_own_type_with_remote_traceback(pool: Pool) -> None:
    with pytest.raises(ValueError, match="bad 3") as info:
        pool.apply(fail, (3,))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in str(info.value.__cause__)
    with pytest.raises(ValueError):
        pool.map(fail, [1, 2])
    it = pool.imap(fail, [1])
    with pytest.raises(ValueError):
        next(it)
    result = pool.apply_async(fail, (1,))
    result.wait(30)
    assert result.ready() and not result.successful()


def test_callbacks(pool: Pool) -> None:
    got: list[Any] = []
    errors: list[BaseException] = []
    done = threading.Event()
    pool.apply_async(square, (3,), callback=got.append).get(30)
    pool.map_async(square, [1, 2], callback=got.append).get(30)
    r = pool.apply_async(fail, (1,), error_callback=lambda e: (errors.append(e), done.set()))
    assert done.wait(30)
    with pytest.raises(ValueError):
        r.get()
    assert got == [9, [1, 4]]
    assert isinstance(errors[0], ValueError)


def test_get_timeout_and_not_ready(start_method: str) -> None:
    with procly.get_context(start_method).Pool(1) as p:
        r = p.apply_async(sleep_forever)
        with pytest.raises(procly.TimeoutError):
            r.get(timeout=0.05)
        with pytest.raises(ValueError, match="not ready"):
            r.successful()
        it = p.imap(square, [1])
        with pytest.raises(procly.TimeoutError):
            it.next(timeout=0.05)


def test_initializer_and_maxtasksperchild(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with ctx.Pool(2, initializer=remember, initargs=("hello",)) as p:
        assert p.apply(read_init) == "hello"
    with ctx.Pool(1, maxtasksperchild=2) as p:
        pids = [p.apply(pid_of) for _ in range(6)]
    assert len(set(pids)) == 3


def test_unpicklable_result_and_argument(pool: Pool) -> None:
    with pytest.raises(SerializationError, match="lock"):
        pool.apply(return_lock)
    with pytest.raises(SerializationError):
        pool.apply(square, (threading.Lock(),))
    assert pool.apply(square, (4,)) == 16


def test_system_exit_fails_only_its_task(pool: Pool) -> None:
    with pytest.raises(SystemExit):
        pool.apply(raise_system_exit)
    assert pool.map(square, range(4)) == [0, 1, 4, 9]


def test_closed_pool_raises(start_method: str) -> None:
    p = procly.get_context(start_method).Pool(1)
    r = p.apply_async(square, (2,))
    p.close()
    with pytest.raises(PoolClosedError):
        p.apply_async(square, (1,))
    with pytest.raises(ValueError):  # stdlib-compatible
        p.map(square, [1])
    p.join()
    assert r.get(1) == 4
    with pytest.raises(ValueError), p:
        pass


def test_join_requires_close(start_method: str) -> None:
    p = procly.get_context(start_method).Pool(1)
    try:
        with pytest.raises(ValueError):
            p.join()
    finally:
        p.terminate()


def test_terminate_fails_outstanding(start_method: str) -> None:
    p = procly.get_context(start_method).Pool(1)
    r = p.apply_async(sleep_forever)
    p.terminate()
    with pytest.raises(PoolClosedError):
        r.get(5)
    p.join()


def test_bad_arguments(pool: Pool) -> None:
    with pytest.raises(ValueError):
        pool.map(square, [1], chunksize=0)
    with pytest.raises(TypeError):
        pool.imap(square, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        pool.apply_async(square, (1,), timeout=-1)
    with pytest.raises(NotImplementedError):
        import pickle

        pickle.dumps(pool)


def test_bad_pool_arguments() -> None:
    with pytest.raises(ValueError):
        procly.Pool(0)
    with pytest.raises(ValueError):
        procly.Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError):
        procly.Pool(1, initializer=5)


def test_default_context_pool() -> None:
    with procly.Pool(1) as p:
        assert p.apply(square, (3,)) == 9


def infinite() -> Iterator[int]:
    i = 0
    while True:
        yield i
        i += 1


def test_imap_infinite_generator_streams_with_bounded_input(pool: Pool) -> None:
    pulled = 0

    def counting() -> Iterator[int]:
        nonlocal pulled
        for i in infinite():
            pulled += 1
            yield i

    it = pool.imap(square, counting(), chunksize=1, buffersize=4)
    for expected in range(200):
        assert next(it) == expected * expected
    it.close()
    # bounded: at most the buffer (4 chunks of 1) plus the one being chunked ahead
    assert pulled <= 200 + 4 + 1


def test_imap_input_error_raised_at_its_position(pool: Pool) -> None:
    def broken() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("input broke")

    it = pool.imap(square, broken(), chunksize=1)
    assert next(it) == 1
    assert next(it) == 4
    with pytest.raises(OSError, match="input broke"):
        next(it)
    with pytest.raises(StopIteration):
        next(it)


def test_imap_continues_after_close(start_method: str) -> None:
    p = procly.get_context(start_method).Pool(2)
    it = p.imap(square, range(100), chunksize=3)
    p.close()
    assert list(it) == [x * x for x in range(100)]
    p.join()


def test_thread_safety_of_submission(pool: Pool) -> None:
    results: list[list[int]] = [[] for _ in range(4)]

    def submit(i: int) -> None:
        rs = [pool.apply_async(square, (j,)) for j in range(200)]
        results[i] = [r.get(60) for r in rs]

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r == [j * j for j in range(200)] for r in results)


def double_array(a: Any) -> Any:
    return a * 2


def test_large_numpy_arrays_both_ways(pool: Pool) -> None:
    np = pytest.importorskip("numpy")
    arrays = [np.arange(200_000, dtype=np.float64) + i for i in range(3)]
    results = pool.map(double_array, arrays, chunksize=1)
    for a, r in zip(arrays, results, strict=True):
        assert (r == a * 2).all()
    r = pool.apply(double_array, (arrays[0],))
    r += 1  # received arrays are writable
    assert r[0] == 1.0


def test_abandoned_imap_does_not_block_close(start_method: str) -> None:
    import gc

    p = procly.get_context(start_method).Pool(2)
    it = p.imap(square, infinite(), chunksize=1, buffersize=2)
    assert next(it) == 0
    del it
    gc.collect()
    p.close()
    p.join()  # would hang if the abandoned feeder kept the pool open


def test_unclosed_pool_warns_and_winds_down(start_method: str) -> None:
    import gc

    p = procly.get_context(start_method).Pool(1)
    engine = p._engine
    assert p.apply(square, (2,)) == 4
    with pytest.warns(ResourceWarning, match="unclosed running pool"):
        del p
        gc.collect()
    assert engine is not None and engine.join(30)


def test_remote_traceback_shows_the_arguments(pool: Pool) -> None:
    with pytest.raises(ValueError) as info:
        pool.apply(fail, ("x" * 1000,))
    text = str(info.value.__cause__)
    assert "in task: fail called with" in text
    assert "..." in text and len(text) < 5000  # truncated
    with pytest.raises(ValueError) as info:
        pool.map(fail, [7, 8], chunksize=2)
    assert "chunk of 2 items" in str(info.value.__cause__)


def thread_env() -> tuple[str | None, str | None]:
    return os.environ.get("OMP_NUM_THREADS"), os.environ.get("OPENBLAS_NUM_THREADS")


def test_native_thread_pools_are_limited(start_method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = procly.get_context(start_method)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with ctx.Pool(2, thread_limit=3) as p:
        assert p.apply(thread_env) == ("3", "3")
    with ctx.Pool(1, thread_limit=None) as p:
        assert p.apply(thread_env) == (None, None)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the user's choice wins: not overridden
    with ctx.Pool(1) as p:
        omp, blas = p.apply(thread_env)
    # (a forkserver's children see the server's environment, as in the standard library)
    assert omp == ("7" if start_method != "forkserver" else None)
    assert blas is not None
    with pytest.raises(ValueError):
        ctx.Pool(1, thread_limit=0)
