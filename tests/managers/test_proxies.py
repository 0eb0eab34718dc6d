"""SyncManager proxies: every typeid, in the parent and in children of every start method."""

from __future__ import annotations

import copy
import os
import pickle
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import procly
from procly.managers import (
    BaseProxy,
    DictProxy,
    ListProxy,
    Namespace,
    RemoteError,
    SyncManager,
    ValueProxy,
)


@pytest.fixture
def manager() -> Iterator[Any]:
    with procly.get_context("fork").Manager() as m:
        yield m


# -- children (every start method) ------------------------------------------------------------


def _child_uses_everything(objs: dict[str, Any]) -> None:
    out = objs["dict"]
    out["child"] = "here"
    objs["list"].append("from child")
    objs["ns"].seen = True
    objs["queue"].put("q-item")
    jq = objs["jqueue"]
    jq.get()
    jq.task_done()
    for name in ("lock", "rlock", "sem", "bsem"):
        with objs[name]:
            out[name] = True
    cond = objs["cond"]
    with cond:
        cond.notify_all()
    objs["event"].set()
    out["barrier"] = objs["barrier"].wait(timeout=30)
    objs["value"].value = 42
    objs["array"][0] = 7
    objs["nested"]["inner"].append("deep")


def test_every_proxy_type_in_a_child(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with ctx.Manager() as m:
        nested = m.dict(inner=m.list())
        objs = {
            "dict": m.dict(),
            "list": m.list(),
            "ns": m.Namespace(seen=False),
            "queue": m.Queue(),
            "jqueue": m.JoinableQueue(),
            "lock": m.Lock(),
            "rlock": m.RLock(),
            "sem": m.Semaphore(2),
            "bsem": m.BoundedSemaphore(1),
            "cond": m.Condition(),
            "event": m.Event(),
            "barrier": m.Barrier(2),
            "value": m.Value("i", 0),
            "array": m.Array("i", [0, 1, 2]),
            "nested": nested,
        }
        objs["jqueue"].put("job")
        p = ctx.Process(target=_child_uses_everything, args=(objs,))
        p.start()
        objs["barrier"].wait(timeout=30)
        objs["jqueue"].join()
        assert objs["event"].wait(30)
        p.join(30)
        assert p.exitcode == 0
        out = objs["dict"]
        assert out["child"] == "here"
        assert all(out[name] for name in ("lock", "rlock", "sem", "bsem"))
        assert out["barrier"] in (0, 1)
        assert objs["list"][:] == ["from child"]
        assert objs["ns"].seen is True
        assert objs["queue"].get(timeout=10) == "q-item"
        assert objs["value"].value == 42
        assert objs["array"][0] == 7
        assert nested["inner"][:] == ["deep"]


def _square_all(pool: Any, out: Any) -> None:
    out["map"] = pool.map(abs, [-1, -2, -3])


def test_pool_proxy(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with ctx.Manager() as m, m.Pool(1) as pool:
        assert pool.apply(abs, (-5,)) == 5
        assert pool.apply_async(abs, (-6,)).get(timeout=30) == 6
        assert list(pool.imap(abs, [-1, -2])) == [1, 2]
        out = m.dict()
        p = ctx.Process(target=_square_all, args=(pool, out))
        p.start()
        p.join(60)
        assert out["map"] == [1, 2, 3]


# -- in the parent ----------------------------------------------------------------------------


def test_manager_returns_a_started_sync_manager() -> None:
    m = procly.Manager()
    try:
        assert isinstance(m, SyncManager)
        assert m.address is not None
        assert m.dict(a=1)["a"] == 1
    finally:
        m.shutdown()
    m.shutdown()  # idempotent


def test_dict_proxy(manager: Any) -> None:
    d = manager.dict({"a": 1})
    assert isinstance(d, DictProxy)
    d["b"] = 2
    d.update({"c": 3}, e=5)
    assert d["a"] == 1 and len(d) == 4 and "c" in d and "zz" not in d
    assert sorted(d) == ["a", "b", "c", "e"]
    assert sorted(d.keys()) == ["a", "b", "c", "e"]
    assert sorted(d.values()) == [1, 2, 3, 5]
    assert sorted(d.items()) == [("a", 1), ("b", 2), ("c", 3), ("e", 5)]
    assert d.get("zz") is None and d.get("zz", 9) == 9
    assert d.setdefault("f", 6) == 6
    assert d.pop("f") == 6
    del d["e"]
    assert d.copy() == {"a": 1, "b": 2, "c": 3}
    assert d._getvalue() == {"a": 1, "b": 2, "c": 3}
    assert d.popitem() == ("c", 3)
    with pytest.raises(KeyError):
        d["missing"]
    with pytest.raises(TypeError):
        d[[1]] = 1  # unhashable key: the server's TypeError, re-raised here
    d.clear()
    assert len(d) == 0 and list(d) == []


def test_dict_iteration_of_many_items_is_complete(manager: Any) -> None:
    d = manager.dict()
    d.update((i, i * i) for i in range(5000))
    assert sorted(d) == list(range(5000))
    assert sum(v for _, v in d.items()) == sum(i * i for i in range(5000))


def test_list_proxy(manager: Any) -> None:
    lst = manager.list([3, 1, 2])
    assert isinstance(lst, ListProxy)
    lst.append(4)
    lst.extend([5])
    lst += [6]
    assert lst[:] == [3, 1, 2, 4, 5, 6] and len(lst) == 6
    assert list(lst) == [3, 1, 2, 4, 5, 6]
    assert lst[0] == 3 and lst[-1] == 6 and 4 in lst
    lst.sort()
    assert lst[:] == [1, 2, 3, 4, 5, 6]
    lst.reverse()
    assert lst.index(6) == 0 and lst.count(6) == 1
    lst.insert(0, 0)
    assert lst.pop(0) == 0
    lst.remove(6)
    lst[0] = 50
    del lst[0]
    assert lst[:] == [4, 3, 2, 1]
    lst *= 2
    assert len(lst) == 8
    assert lst + [9] == [4, 3, 2, 1, 4, 3, 2, 1, 9]  # noqa: RUF005 - the proxy's __add__
    assert list(reversed(lst))[:2] == [1, 2]
    with pytest.raises(IndexError):
        lst[100]
    with pytest.raises(ValueError):
        lst.index(999)


def test_nested_proxies(manager: Any) -> None:
    outer = manager.dict()
    outer["inner"] = manager.list()
    outer["inner"].append(1)
    inner = outer["inner"]
    inner.append(2)
    assert outer["inner"][:] == [1, 2]
    lists = manager.list([manager.dict(), manager.dict()])
    lists[0]["x"] = 1
    assert lists[0]["x"] == 1 and lists[1].copy() == {}


def test_namespace_value_array(manager: Any) -> None:
    ns = manager.Namespace(a=1)
    ns.b = 2
    assert ns.a == 1 and ns.b == 2
    del ns.a
    with pytest.raises(AttributeError):
        ns.a  # noqa: B018
    assert str(ns) == "Namespace(b=2)"
    v = manager.Value("d", 1.5)
    assert isinstance(v, ValueProxy)
    v.value += 1
    assert v.get() == 2.5
    v.set(3.0)
    assert v.value == 3.0 and str(v) == "Value('d', 3.0)"
    arr = manager.Array("i", range(4))
    arr[1] = 10
    assert len(arr) == 4 and arr[1] == 10 and list(arr[:]) == [0, 10, 2, 3]


def test_sync_primitives(manager: Any) -> None:
    lock = manager.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    lock.release()
    rlock = manager.RLock()
    with rlock, rlock:
        pass
    sem = manager.Semaphore(1)
    assert sem.acquire(timeout=1) is True
    assert sem.acquire(True, 0.01) is False
    sem.release()
    bsem = manager.BoundedSemaphore(1)
    with pytest.raises(ValueError):
        bsem.release()
    ev = manager.Event()
    assert ev.is_set() is False and ev.wait(0.01) is False
    ev.set()
    assert ev.wait() is True
    ev.clear()
    cond = manager.Condition()
    with cond:
        assert cond.wait(0.01) is False
        assert cond.wait_for(lambda: True) is True
        assert cond.wait_for(lambda: False, timeout=0.01) is False
    barrier = manager.Barrier(1)
    assert barrier.parties == 1 and barrier.n_waiting == 0 and barrier.broken is False
    assert barrier.wait() == 0


def test_queue_proxy(manager: Any) -> None:
    q = manager.Queue(maxsize=1)
    q.put("a")
    with pytest.raises(queue.Full):
        q.put_nowait("b")
    assert q.qsize() == 1 and q.full()
    assert q.get() == "a"
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    q.put(manager.list([1]))  # a proxy through a managed queue
    assert q.get()[:] == [1]


def test_callmethod_getvalue_str_repr_deepcopy(manager: Any) -> None:
    d = manager.dict(a=1)
    assert d._callmethod("__getitem__", ("a",)) == 1
    assert d._callmethod("get", ("b",), {}) is None
    assert d._getvalue() == {"a": 1}
    assert str(d) == "{'a': 1}"
    assert repr(d).startswith("<DictProxy object, typeid 'dict' at ")
    assert copy.deepcopy(d) == {"a": 1}
    with pytest.raises(RemoteError, match="not in exposed"):
        d._callmethod("no_such_method")


def test_threads_share_proxies(manager: Any) -> None:
    d = manager.dict()
    lock = manager.Lock()

    def work(n: int) -> None:
        for i in range(50):
            d[(n, i)] = i
        with lock:
            d[n] = "done"

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(d) == 4 * 51


def test_references_are_released(manager: Any) -> None:
    base = manager._number_of_objects()
    d = manager.dict()
    d["l"] = manager.list()
    assert manager._number_of_objects() == base + 2
    del d
    assert manager._number_of_objects() == base  # pending decrefs ride on this call


def test_proxy_pickles_within_the_process(manager: Any) -> None:
    d = manager.dict(a=1)
    again = pickle.loads(pickle.dumps(d))
    assert isinstance(again, DictProxy) and again["a"] == 1
    again["b"] = 2
    assert d["b"] == 2


def test_unpicklable_argument_fails_before_sending(manager: Any) -> None:
    d = manager.dict()
    with pytest.raises(pickle.PicklingError):
        d["x"] = threading.Lock()
    d["y"] = 1  # the connection is still usable
    assert d["y"] == 1


def test_unpicklable_result_is_a_remote_error(manager: Any) -> None:
    q = manager.Queue()
    q.put(1)
    with pytest.raises(RemoteError):
        q._callmethod("__getattribute__", ("mutex",))  # a threading.Lock cannot be pickled
    assert q.get() == 1


def test_proxy_after_shutdown_raises_a_connection_error() -> None:
    m = procly.get_context("fork").Manager()
    d = m.dict()
    m.shutdown()
    with pytest.raises((EOFError, ConnectionError)):
        d["a"] = 1


def test_base_proxy_is_public() -> None:
    assert issubclass(DictProxy, BaseProxy)
    assert Namespace(a=1).a == 1


def _eventually(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll *predicate* until true or *timeout* passes (a bound, not synchronisation)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _use_after_parent_dropped(go: Any, lst: Any, out: Any) -> None:
    go.recv()
    lst.append("child")
    out.send(lst[:])


def test_forked_child_keeps_inherited_proxies_alive() -> None:
    """The parent drops its proxy (and the server hears of it) before the forked child
    first uses its inherited copy: the child took its own reference at fork time."""
    ctx = procly.get_context("fork")
    with ctx.Manager() as m:
        go_r, go_w = ctx.Pipe(duplex=False)
        out_r, out_w = ctx.Pipe(duplex=False)
        lst = m.list(["parent"])
        base = m._number_of_objects()
        p = ctx.Process(target=_use_after_parent_dropped, args=(go_r, lst, out_w))
        p.start()
        del lst
        m._number_of_objects()  # flushes this process's decref
        go_w.send("go")
        assert out_r.poll(30)
        assert out_r.recv() == ["parent", "child"]
        p.join(30)
        assert p.exitcode == 0
        # released when the server notices the child's connection closed (asynchronously)
        assert _eventually(lambda: m._number_of_objects() == base - 1)


def _churn(shared: Any, rounds: int) -> None:
    for i in range(rounds):
        inner = shared.get("template")  # a proxy returned by the server
        lst = [inner]
        shared[("tmp", os.getpid(), i % 3)] = lst
        del lst, inner


def test_reference_counts_survive_concurrent_churn(start_method: str) -> None:
    """Threads and processes creating, nesting, returning and dropping proxies at once:
    afterwards only what is still referenced remains."""
    ctx = procly.get_context(start_method)
    with ctx.Manager() as m:
        shared = m.dict()
        shared["template"] = m.list([1, 2])
        threads = [threading.Thread(target=_churn, args=(shared, 30)) for _ in range(3)]
        procs = [ctx.Process(target=_churn, args=(shared, 30)) for _ in range(2)]
        for worker in [*threads, *procs]:
            worker.start()
        for t in threads:
            t.join(60)
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        for key in [k for k in shared if k != "template"]:
            del shared[key]
        assert shared["template"][:] == [1, 2]
        # the dict, the template list, and nothing else once the server saw every goodbye
        assert _eventually(lambda: m._number_of_objects() == 2)
