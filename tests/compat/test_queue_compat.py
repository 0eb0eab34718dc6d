"""Queue parity with the standard library: the same test bodies run against
``multiprocessing`` and ``procly`` (the Python documentation is the spec)."""

from __future__ import annotations

import importlib
import queue
from types import ModuleType
from typing import Any

import pytest

MODULES = ("multiprocessing", "procly")


@pytest.fixture(params=MODULES)
def mp(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def _child_put(q: Any, items: list[Any]) -> None:
    for item in items:
        q.put(item)


def _child_task_done(q: Any) -> None:
    for _ in range(3):
        q.get()
        q.task_done()


def test_fifo_qsize_empty_full(mp: ModuleType) -> None:
    q = mp.Queue(2)
    assert q.empty() and not q.full()
    q.put("a")
    q.put_nowait(("b", 2))
    assert q.full()
    with pytest.raises(queue.Full):
        q.put("c", block=False)
    with pytest.raises(queue.Full):
        q.put("c", timeout=0.05)
    assert q.get() == "a"
    assert q.get_nowait() == ("b", 2)
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    q.close()
    q.join_thread()


def test_closed_queue_raises_value_error(mp: ModuleType) -> None:
    q = mp.Queue()
    q.close()
    with pytest.raises(ValueError):
        q.put(1)
    with pytest.raises(ValueError):
        q.get()
    q.join_thread()


def test_task_done_too_many(mp: ModuleType) -> None:
    q = mp.JoinableQueue()
    with pytest.raises(ValueError, match=r"task_done\(\) called too many times"):
        q.task_done()
    q.put(1)
    q.get()
    q.task_done()
    q.join()
    q.close()
    q.join_thread()


def test_simple_queue(mp: ModuleType) -> None:
    q = mp.SimpleQueue()
    assert q.empty()
    q.put({"k": [1, 2]})
    assert not q.empty()
    assert q.get() == {"k": [1, 2]}
    q.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_puts_parent_gets(mp: ModuleType, method: str) -> None:
    ctx = mp.get_context(method)
    q = ctx.Queue()
    items = [1, "two", (3.0, None), b"x" * 70_000]
    p = ctx.Process(target=_child_put, args=(q, items))
    p.start()
    got = [q.get(timeout=60) for _ in items]  # get before join: works with both
    p.join(60)
    assert got == items and p.exitcode == 0
    q.close()
    q.join_thread()


def test_joinable_join_waits_for_task_done(mp: ModuleType) -> None:
    ctx = mp.get_context("fork")
    q = ctx.JoinableQueue()
    for i in range(3):
        q.put(i)
    p = ctx.Process(target=_child_task_done, args=(q,))
    p.start()
    q.join()
    p.join(60)
    assert p.exitcode == 0
    q.close()
    q.join_thread()


def test_pickling_outside_spawning_is_refused(mp: ModuleType) -> None:
    import pickle

    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(mp.Queue())
