"""``procly.pool.ThreadPool``: the Pool API over threads, nothing pickled."""

from __future__ import annotations

import threading

import pytest

from procly.errors import PoolClosedError
from procly.pool import ThreadPool


def test_threadpool_api() -> None:
    lock = threading.Lock()  # unpicklable: proves nothing is pickled
    with ThreadPool(3) as pool:
        assert pool.apply(lambda lk, x: (lk is lock, x), (lock, 2)) == (True, 2)
        assert pool.map(lambda x: x * 2, range(10)) == [x * 2 for x in range(10)]
        assert pool.starmap(pow, [(2, 3)]) == [8]
        assert list(pool.imap(abs, [-1, -2], chunksize=1)) == [1, 2]
        assert sorted(pool.imap_unordered(abs, range(-5, 0))) == [1, 2, 3, 4, 5]
        got: list[int] = []
        pool.apply_async(abs, (-4,), callback=got.append).get(10)
        assert got == [4]
        with pytest.raises(ZeroDivisionError):
            pool.apply(lambda: 1 / 0)
        with pytest.raises(ValueError, match="timeout"):
            pool.apply_async(abs, (1,), timeout=1)


def test_threadpool_initializer_close_join() -> None:
    seen: list[str] = []
    pool = ThreadPool(2, initializer=seen.append, initargs=("init",))
    results = [pool.apply_async(abs, (-i,)) for i in range(50)]
    pool.close()
    with pytest.raises(PoolClosedError):
        pool.apply_async(abs, (1,))
    pool.join()
    assert [r.get(0) for r in results] == list(range(50))
    assert seen == ["init", "init"]


def test_threadpool_terminate_fails_queued() -> None:
    gate, started = threading.Event(), threading.Event()

    def block() -> bool:
        started.set()
        return gate.wait(30)

    pool = ThreadPool(1)
    blocker = pool.apply_async(block)
    queued = pool.apply_async(abs, (-1,))
    assert started.wait(10)
    terminator = threading.Thread(target=pool.terminate)
    terminator.start()
    with pytest.raises(PoolClosedError):  # failed by terminate() before it waits
        queued.get(10)
    gate.set()
    terminator.join(10)
    assert blocker.get(10) is True


def test_dummy_module() -> None:
    import procly.dummy as dummy

    out: list[int] = []
    p = dummy.Process(target=out.append, args=(5,))
    assert p.exitcode is None
    p.start()
    p.join()
    assert out == [5] and p.exitcode == 0
    assert dummy.active_children() == []
    a, b = dummy.Pipe()
    a.send("hi")
    assert b.poll(1) and b.recv() == "hi"
    v = dummy.Value("i", 3)
    v.value += 1
    assert v.value == 4
    assert list(dummy.Array("i", [1, 2])) == [1, 2]
    assert dummy.Namespace(x=1).x == 1
    with dummy.Pool(2) as pool:
        assert pool.map(abs, [-1, -2]) == [1, 2]
    q: dummy.Queue[int] = dummy.Queue()
    q.put(1)
    assert q.get() == 1
