"""Queue, JoinableQueue and SimpleQueue: the standard API under every start method, batch
operations, timeouts, maxsize, threads, the join-deadlock scenario and big items."""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import queue
import threading
import time
from typing import Any

import numpy as np
import pytest

import procly
from procly._queues import _queue as queue_impl
from procly._queues import _ring
from procly.errors import SerializationError
from procly.queues import JoinableQueue, Queue, SimpleQueue

# -- functions that run in children (module level: spawn/forkserver import them) ----------


def _echo(inq: Any, outq: Any) -> None:
    """Exercise every method from the child side; stop at None."""
    while True:
        item = inq.get()
        if item is None:
            break
        if item == "batch":
            outq.put_many(inq.get_many(max_items=3, timeout=30))
            continue
        outq.put(("echo", item))
    outq.put_nowait(("qsize", inq.qsize(), inq.empty(), inq.full()))
    try:
        inq.get_nowait()
    except queue.Empty:
        outq.put("empty-ok")
    inq.close()
    inq.join_thread()
    outq.close()


def _put_range(q: Any, start: int, stop: int) -> None:
    for i in range(start, stop):
        q.put(i)


def _put_big_and_exit(q: Any, count: int, size: int) -> None:
    for i in range(count):
        q.put(str(i) * size)


def _worker_task_done(q: Any, results: Any) -> None:
    while True:
        item = q.get()
        if item is None:
            q.task_done()
            break
        results.put(item * 2)
        q.task_done()


def _simple_child(inq: Any, outq: Any) -> None:
    outq.put(inq.get() + 1)
    outq.put(inq.empty())


def _put_array(q: Any, nbytes: int) -> None:
    arr = np.arange(nbytes // 8, dtype=np.int64)
    q.put(arr)
    q.put([arr[:10], b"x" * (queue_impl.INLINE_MAX + 1)])


# -- single process -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Queue, JoinableQueue])
def test_fifo_and_state(cls: type[Queue]) -> None:
    q = cls(maxsize=3)
    assert q.empty() and not q.full() and q.qsize() == 0
    q.put(1)
    q.put_nowait("two")
    q.put({"three": 3}, block=False)
    assert q.full() and q.qsize() == 3 and not q.empty()
    with pytest.raises(queue.Full):
        q.put_nowait(4)
    with pytest.raises(queue.Full):
        q.put(4, timeout=0.01)
    assert [q.get(), q.get_nowait(), q.get(False)] == [1, "two", {"three": 3}]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False, timeout=5)


def test_batches() -> None:
    q = Queue()
    q.put_many([])
    q.put_many(range(5))
    q.put_many(iter(["a", "b"]))
    assert q.qsize() == 7
    assert q.get_many(max_items=2) == [0, 1]
    assert q.get() == 2
    assert q.get_many() == [3, 4, "a", "b"]
    with pytest.raises(queue.Empty):
        q.get_many(block=False)
    with pytest.raises(queue.Empty):
        q.get_many(timeout=0.01)
    bounded = Queue(maxsize=4)
    bounded.put_many([1, 2, 3])
    with pytest.raises(queue.Full):  # atomic: 2 more do not fit, none is put
        bounded.put_many([4, 5], timeout=0.01)
    assert bounded.qsize() == 3


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="maxsize"):
        Queue("3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="maxsize"):
        JoinableQueue(1.5)  # type: ignore[arg-type]
    q = Queue(maxsize=2)
    with pytest.raises(ValueError, match="max_items"):
        q.get_many(max_items=0)
    with pytest.raises(ValueError, match="max_items"):
        q.get_many(max_items="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="never fit"):
        q.put_many([1, 2, 3])
    with pytest.raises(SerializationError, match="lock"):
        q.put(threading.Lock())
    with pytest.raises(SerializationError):
        q.put_many([1, threading.Lock()])
    assert q.qsize() == 0  # a failed put leaves nothing behind
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(q)
    with pytest.raises(AssertionError):
        q.join_thread()
    q.cancel_join_thread()
    q.close()
    q.join_thread()
    for call in (lambda: q.put(1), q.get, lambda: q.put_many([1]), q.get_many):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_joinable_single_process() -> None:
    q = JoinableQueue()
    with pytest.raises(ValueError, match="task_done\\(\\) called too many times"):
        q.task_done()
    q.put(1)
    q.put_many([2, 3])
    assert q._ring.unfinished() == 3
    for _ in range(3):
        q.get()
        q.task_done()
    q.join()  # returns at once: nothing unfinished
    with pytest.raises(ValueError, match="too many"):
        q.task_done()


def test_simple_queue_single_process() -> None:
    q = SimpleQueue()
    assert q.empty()
    q.put([1, 2])
    q.put_many(["a", "b"])
    assert not q.empty()
    assert q.get() == [1, 2]
    assert q.get_many() == ["a", "b"]
    q.close()
    with pytest.raises(OSError):
        q.put(1)
    with pytest.raises(OSError):
        q.get()


def test_timeouts_are_bounded() -> None:
    q = Queue(maxsize=1)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.2
    q.put(1)
    started = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(2, timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.2
    started = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(2, timeout=-1)  # negative: do not wait, like the standard library
    assert time.monotonic() - started < 1.0


def test_threads_share_one_queue() -> None:
    q = Queue(maxsize=8)
    got: list[int] = []
    lock = threading.Lock()

    def consume() -> None:
        while True:
            item = q.get(timeout=30)
            if item is None:
                return
            with lock:
                got.append(item)

    def produce(base: int) -> None:
        for i in range(500):
            q.put(base + i)

    consumers = [threading.Thread(target=consume) for _ in range(3)]
    producers = [threading.Thread(target=produce, args=(k * 1000,)) for k in range(3)]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join()
    for _ in consumers:
        q.put(None)
    for t in consumers:
        t.join()
    assert sorted(got) == sorted(k * 1000 + i for k in range(3) for i in range(500))


def test_blocked_put_wakes_when_space_frees() -> None:
    q = Queue(maxsize=1)
    q.put("first")
    done = threading.Event()

    def blocked_put() -> None:
        q.put("second", timeout=30)
        done.set()

    t = threading.Thread(target=blocked_put)
    t.start()
    assert q.get(timeout=30) == "first"
    assert done.wait(30)
    t.join()
    assert q.get(timeout=30) == "second"


def test_ring_grows_while_wrapped_and_keeps_order() -> None:
    q = Queue()
    ring = q._ring
    first = ring.capacity()
    payload = "x" * 1000
    # advance HEAD so that the ring wraps, then overfill it to force growth while wrapped
    q.put_many([(i, payload) for i in range(600)])
    assert [q.get()[0] for _ in range(500)] == list(range(500))
    q.put_many([(i, payload) for i in range(600, 3000)])
    assert ring.capacity() > first
    assert [item[0] for item in q.get_many()] == list(range(500, 3000))
    assert q.empty()


def test_big_items_single_process() -> None:
    q = Queue()
    arr = np.arange(1 << 20, dtype=np.float64)  # 8 MiB, out-of-band
    big_str = "y" * (3 * queue_impl.INLINE_MAX)  # in-band but too big for the ring
    q.put(arr)
    q.put(big_str)
    q.put_many([arr[::2].copy(), 7])
    received = q.get()
    assert np.array_equal(received, arr)
    assert received.flags.writeable
    # zero copy: the array's memory is the mapping of the item's segment
    base: Any = received
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
    assert q.get() == big_str
    rest = q.get_many()
    assert np.array_equal(rest[0], arr[::2]) and rest[1] == 7

def _item_segments() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if "-i-" in n and n.startswith(_prefix())}


def test_big_item_segments_are_recycled() -> None:
    q = Queue()
    arr = np.arange(1 << 18, dtype=np.int64)  # 2 MiB
    q.put(arr)
    received = q.get()
    held = _item_segments()
    assert len(held) == 1  # named while the received array maps it
    del received
    gc.collect()
    assert _item_segments() == held  # kept as a spare...
    q.put(arr + 1)
    assert _item_segments() == held  # ...and refilled instead of a fresh segment
    again = q.get()
    assert np.array_equal(again, arr + 1)
    other = q._ring._table.take_spare(1 << 21)
    assert other is None  # the spare is in use again


def _prefix() -> str:
    return os.environ["PROCLY_NAME_PREFIX"]


def test_unreceived_big_items_are_freed_with_the_queue() -> None:
    q = Queue()
    q.put(np.zeros(1 << 17))
    q.put_many([np.ones(1 << 17), b"z" * (queue_impl.INLINE_MAX + 5)])
    assert len([n for n in os.listdir("/dev/shm") if n.startswith(_prefix())]) >= 4
    del q
    gc.collect()
    assert [n for n in os.listdir("/dev/shm") if n.startswith(_prefix())] == []


# -- across processes, every start method -----------------------------------------------------


def test_every_method_across_processes(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    inq, outq = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_echo, args=(inq, outq))
    p.start()
    inq.put(1)
    inq.put_many(["batch", "a", "b", "c"])
    assert outq.get(timeout=30) == ("echo", 1)
    assert outq.get_many(max_items=3, timeout=30) == ["a", "b", "c"]
    inq.put(None)
    p.join(30)
    assert p.exitcode == 0
    rest = []
    while not outq.empty():
        rest.append(outq.get(timeout=30))
    assert rest == [("qsize", 0, True, False), "empty-ok"]


def test_batch_across_processes(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    inq, outq = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_echo, args=(inq, outq))
    p.start()
    inq.put_many(["batch", "a", "b", "c", None])
    got: list[Any] = []
    while len(got) < 5:
        got.extend(outq.get_many(timeout=30))
    p.join(30)
    assert got == ["a", "b", "c", ("qsize", 0, True, False), "empty-ok"]


def test_joinable_across_processes(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q, results = ctx.JoinableQueue(), ctx.Queue()
    p = ctx.Process(target=_worker_task_done, args=(q, results))
    p.start()
    q.put_many(range(20))
    q.put(None)
    q.join()  # returns only after the child called task_done 21 times
    assert q._ring.unfinished() == 0
    p.join(30)
    total: list[int] = []
    while not results.empty():
        total.extend(results.get_many())
    assert sorted(total) == [i * 2 for i in range(20)]
    assert p.exitcode == 0


def test_simple_queue_across_processes(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    inq, outq = ctx.SimpleQueue(), ctx.SimpleQueue()
    p = ctx.Process(target=_simple_child, args=(inq, outq))
    p.start()
    inq.put(41)
    assert outq.get() == 42
    assert outq.get() is True
    p.join(30)
    assert p.exitcode == 0


def test_no_join_deadlock(start_method: str) -> None:
    """The standard library's documented deadlock: a child puts more than a pipe buffer
    holds and the parent joins it before getting.  Here ``join`` returns."""
    ctx = procly.get_context(start_method)
    q = ctx.Queue()
    p = ctx.Process(target=_put_big_and_exit, args=(q, 20, 100_000))  # 20 x 100 kB
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert [q.get(timeout=30) for _ in range(20)] == [str(i) * 100_000 for i in range(20)]


def test_many_producers_and_consumers(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q = ctx.Queue(maxsize=50)
    producers = [ctx.Process(target=_put_range, args=(q, k * 1000, k * 1000 + 300)) for k in range(2)]
    for p in producers:
        p.start()
    got = [q.get(timeout=30) for _ in range(600)]
    for p in producers:
        p.join(30)
    assert sorted(got) == sorted(k * 1000 + i for k in range(2) for i in range(300))
    for k in range(2):  # FIFO per producer
        mine = [g for g in got if k * 1000 <= g < k * 1000 + 1000]
        assert mine == sorted(mine)


def test_big_items_across_processes(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q = ctx.Queue()
    p = ctx.Process(target=_put_array, args=(q, 16 << 20))
    p.start()
    p.join(60)  # exits before anything is received
    assert p.exitcode == 0
    arr = q.get(timeout=30)
    assert arr.shape == (2 << 20,) and arr[-1] == (2 << 20) - 1
    head, blob = q.get(timeout=30)
    assert list(head) == list(range(10)) and blob == b"x" * (queue_impl.INLINE_MAX + 1)


def test_capacity_constant_is_sane() -> None:
    assert _ring.INITIAL_CAPACITY < _ring.MAX_CAPACITY


_EXIT_SCRIPT = """
import sys
import numpy as np
import procly

def consume(q, path):
    got = [int(q.get(timeout=60)[0]) for _ in range(3)]
    with open(path, "w") as f:
        f.write(repr(got))

if __name__ == "__main__":
    ctx = procly.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=consume, args=(q, sys.argv[1]))
    p.start()
    for i in range(3):
        q.put(np.full(100_000, i))
    # no join: the exit sequence joins the child before the queue is destroyed
"""


def test_creator_exit_waits_for_children_before_destroying(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = tmp_path / "exit_script.py"
    script.write_text(_EXIT_SCRIPT)
    out = tmp_path / "out.txt"
    done = subprocess.run([sys.executable, str(script), str(out)], timeout=120, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_text() == "[0, 1, 2]"
