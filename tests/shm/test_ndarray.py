"""Shared NumPy arrays: O(1) pickles, writes visible both ways, freed with their last user."""

from __future__ import annotations

import gc
import os
import pickle
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

import procly
from procly._proc import _tracker
from procly.shared_memory import ndarray, share

np = pytest.importorskip("numpy")


def exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll *predicate* until true (a bounded wait on another process's progress)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def test_basics_and_errors() -> None:
    a = ndarray((3, 4), "i4")
    assert a.shape == (3, 4) and a.dtype == np.int32 and not a.any()
    f = ndarray((2, 3), order="F")
    assert f.flags.f_contiguous and f.dtype == np.float64
    s = share([[1, 2], [3, 4]])
    assert s.tolist() == [[1, 2], [3, 4]]
    assert type(a + 1) is np.ndarray  # computed results are private
    assert type(a.sum()) is np.int64
    e = ndarray(0)
    assert e.size == 0 and pickle.loads(pickle.dumps(e)).size == 0
    with pytest.raises(ValueError, match="negative"):
        ndarray((-1,))
    with pytest.raises(TypeError, match="Python objects"):
        ndarray(3, object)
    with pytest.raises(TypeError):
        ndarray(3, "not a dtype")
    with pytest.raises(ValueError, match="order"):
        ndarray(3, order="K")


def test_pickle_is_constant_size_and_shares_memory() -> None:
    small, big = ndarray(10), ndarray(4 << 20)
    p_small, p_big = pickle.dumps(small), pickle.dumps(big)
    assert len(p_small) < 400 and len(p_big) < len(p_small) + 16  # O(1), not O(size)
    b = pickle.loads(p_big)
    pickle.loads(p_small)  # release its hold
    b[123] = 7.5
    assert big[123] == 7.5
    view = big[10:20:3]
    v2 = pickle.loads(pickle.dumps(view))
    v2[1] = 3.0
    assert big[13] == 3.0
    computed = pickle.loads(pickle.dumps(big[:5] * 2))
    assert type(computed) is np.ndarray


def test_freed_when_last_array_dies() -> None:
    a = ndarray(1000)
    name = a.shm.name
    b = pickle.loads(pickle.dumps(a))
    v = a[5:]
    del a
    gc.collect()
    _tracker.sync()
    assert exists(name)
    del b, v
    gc.collect()
    _tracker.sync()
    assert not exists(name)


def child_sum_and_write(arr: Any, conn: Any) -> None:
    conn.send(float(arr.sum()))
    arr[0] = -1.0


def test_process_argument(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    a = share(np.arange(100, dtype="f8"))
    here, there = ctx.Pipe()
    p = ctx.Process(target=child_sum_and_write, args=(a, there))
    p.start()
    try:
        assert here.recv() == 4950.0
    finally:
        p.join()
        here.close()
        there.close()
    assert p.exitcode == 0
    assert a[0] == -1.0


def echo_array(conn: Any) -> None:
    arr = conn.recv()
    arr *= 2
    conn.send(arr[::2])  # a view goes back as a handle too


def test_through_a_connection(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    here, there = ctx.Pipe()
    p = ctx.Process(target=echo_array, args=(there,))
    p.start()
    try:
        a = share(np.ones(1 << 16))
        here.send(a)
        back = here.recv()
        assert back.shape == (1 << 15,)
        back[0] = 9.0
        assert a[0] == 9.0 and a[1] == 2.0
    finally:
        p.join()
        here.close()
        there.close()
    assert p.exitcode == 0


def make_and_block(conn: Any) -> None:
    arr = ndarray(1000)
    arr[:] = 5
    conn.send(arr)
    conn.recv()  # until killed


def test_creator_killed_receiver_keeps_it(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    _tracker.ensure_running()
    here, there = ctx.Pipe()
    p = ctx.Process(target=make_and_block, args=(there,))
    p.start()
    try:
        arr = here.recv()
        name = arr.shm.name
        os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
        p.join()
        wait_until(lambda: (_tracker._query("shm", name) or (0, 0, 0))[1] == 1)
        assert exists(name) and arr.sum() == 5000
        del arr
        gc.collect()
        wait_until(lambda: not exists(name))
    finally:
        if p.is_alive():
            p.kill()
        p.join()
        here.close()
        there.close()


def queue_round_trip(q_in: Any, q_out: Any) -> None:
    arr = q_in.get()
    arr[0] = 123.0
    q_out.put(arr[1:])


def test_through_a_queue(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    a = share(np.zeros(1 << 16))
    q_in, q_out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=queue_round_trip, args=(q_in, q_out))
    p.start()
    try:
        q_in.put(a)
        back = q_out.get(timeout=30)
        back[0] = 5.0
        assert a[0] == 123.0 and a[1] == 5.0
    finally:
        p.join()
        q_in.close()
        q_out.close()
    assert p.exitcode == 0


def pool_task(arr: Any) -> Any:
    arr[1] = 2.0  # argument: the caller's memory
    out = ndarray(3)  # result: made in the worker, shared back
    out[:] = 7.0
    return out


def test_pool_arguments_and_results(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    a = ndarray(10)
    with ctx.Pool(1) as pool:
        results = pool.map(pool_task, [a, a[2:]])
    assert a[1] == 2.0 and a[3] == 2.0
    assert [r.tolist() for r in results] == [[7.0] * 3] * 2
    assert all(r.shm is not None for r in results)  # still shared memory, not copies
