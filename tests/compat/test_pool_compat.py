"""The same Pool/Executor behaviour tests against the standard library and procly.

Only behaviour both must share (the standard pool hangs on a dead worker, so crashes are
tested elsewhere).  ``fork`` keeps this file quick; the procly-only tests cover every start
method.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import time
from collections.abc import Iterator
from typing import Any

import pytest


def square(x: int) -> int:
    return x * x


def fail(x: int) -> None:
    raise KeyError(x)


def sleep_forever() -> None:
    time.sleep(3600)


@pytest.fixture(params=["multiprocessing", "procly"])
def mp(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(str(request.param))


@pytest.fixture
def pool(mp: Any) -> Iterator[Any]:
    with mp.get_context("fork").Pool(2) as p:
        yield p


def test_results_and_order(pool: Any) -> None:
    assert pool.apply(square, (3,)) == 9
    assert pool.map(square, range(10)) == [x * x for x in range(10)]
    assert pool.map(square, range(10), 3) == [x * x for x in range(10)]
    assert pool.starmap(pow, [(2, 5), (3, 2)]) == [32, 9]
    assert list(pool.imap(square, range(10))) == [x * x for x in range(10)]
    assert sorted(pool.imap_unordered(square, range(10))) == [x * x for x in range(10)]
    assert pool.map(square, []) == []


def test_exception_type_and_cause(pool: Any) -> None:
    with pytest.raises(KeyError) as info:
        pool.apply(fail, (1,))
    assert type(info.value.__cause__).__name__ == "RemoteTraceback"
    r = pool.map_async(fail, [1, 2])
    r.wait(30)
    assert r.ready() and not r.successful()


def test_callbacks_receive_value_and_error(pool: Any) -> None:
    got: list[Any] = []
    pool.apply_async(square, (4,), callback=got.append).get(30)
    r = pool.apply_async(fail, (5,), error_callback=got.append)
    with pytest.raises(KeyError):
        r.get(30)
    pool.map_async(square, [1, 2], callback=got.append).get(30)
    assert got[0] == 16 and isinstance(got[1], KeyError) and got[2] == [1, 4]


def test_timeouts_and_not_ready(mp: Any) -> None:
    with mp.get_context("fork").Pool(1) as p:
        r = p.apply_async(sleep_forever)
        with pytest.raises(mp.TimeoutError):
            r.get(0.05)
        if mp.__name__ == "procly":  # procly's is also the builtin TimeoutError
            with pytest.raises(TimeoutError):
                r.get(0.01)
        with pytest.raises(ValueError):
            r.successful()
        with pytest.raises(mp.TimeoutError):
            p.imap(square, [1]).next(0.05)


def test_closed_pool_and_join_rules(mp: Any) -> None:
    p = mp.get_context("fork").Pool(1)
    with pytest.raises(ValueError):
        p.join()  # still running
    p.close()
    with pytest.raises(ValueError):
        p.apply_async(square, (1,))
    with pytest.raises(ValueError):
        p.map(square, [1])
    p.join()


def test_bad_arguments(mp: Any) -> None:
    with pytest.raises(ValueError):
        mp.Pool(0)
    with pytest.raises(ValueError):
        mp.Pool(1, maxtasksperchild=0)
    with pytest.raises(TypeError):
        mp.Pool(1, initializer=3)
    with mp.get_context("fork").Pool(1) as p:
        with pytest.raises(ValueError):
            p.imap(square, [1], chunksize=0)
        with pytest.raises(TypeError):
            p.imap(square, 5)
            list(p.imap(square, 5))


def test_thread_pool(mp: Any) -> None:
    pool_mod = importlib.import_module(f"{mp.__name__}.pool")
    with pool_mod.ThreadPool(2) as tp:
        assert tp.map(square, range(5)) == [0, 1, 4, 9, 16]


@pytest.fixture(params=["concurrent.futures", "procly.futures"])
def executor_cls(request: pytest.FixtureRequest) -> Any:
    return importlib.import_module(str(request.param)).ProcessPoolExecutor


def test_executor_contract(executor_cls: Any) -> None:
    import multiprocessing

    ctx: Any = multiprocessing.get_context("fork")
    if executor_cls.__module__.startswith("procly"):
        import procly

        ctx = procly.get_context("fork")
    with executor_cls(2, mp_context=ctx) as ex:
        f = ex.submit(square, 5)
        assert isinstance(f, cf.Future) and f.result(30) == 25
        assert list(ex.map(square, range(6), timeout=30)) == [x * x for x in range(6)]
        with pytest.raises(KeyError):
            ex.submit(fail, 1).result(30)
        with pytest.raises(KeyError):
            list(ex.map(fail, [1]))
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)
    with pytest.raises(ValueError):
        executor_cls(0)
