"""Managers: the same behavioural tests against the standard library and procly (the
standard library is the reference)."""

from __future__ import annotations

import copy
import importlib
import queue
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(params=["multiprocessing", "procly"])
def mp(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


@pytest.fixture
def manager(mp: ModuleType) -> Iterator[Any]:
    with mp.get_context("fork").Manager() as m:
        yield m


def test_manager_type_and_context_manager(mp: ModuleType) -> None:
    managers = importlib.import_module(mp.__name__ + ".managers")
    with mp.get_context("fork").Manager() as m:
        assert isinstance(m, managers.SyncManager)
        assert m.dict(a=1)["a"] == 1


def test_dict_semantics(manager: Any) -> None:
    d = manager.dict()
    d["a"] = 1
    d.update(b=2)
    assert len(d) == 2 and "a" in d and sorted(d) == ["a", "b"]
    assert sorted(d.items()) == [("a", 1), ("b", 2)]
    assert isinstance(d.keys(), list) and isinstance(d.values(), list)
    assert d.get("z", 0) == 0 and d.pop("b") == 2
    assert d.copy() == {"a": 1} and copy.deepcopy(d) == {"a": 1}
    with pytest.raises(KeyError):
        d["missing"]
    assert str(d) == "{'a': 1}"


def test_list_semantics(manager: Any) -> None:
    lst = manager.list([3, 1])
    lst.append(2)
    lst += [4]
    lst *= 1
    assert lst[:] == [3, 1, 2, 4] and list(lst) == [3, 1, 2, 4] and len(lst) == 4
    lst.sort()
    assert lst[0] == 1 and lst[-1] == 4 and 2 in lst
    with pytest.raises(IndexError):
        lst[10]
    with pytest.raises(ValueError):
        lst.remove(99)
    assert str(lst) == "[1, 2, 3, 4]"


def test_nested_proxies(manager: Any) -> None:
    d = manager.dict()
    d["inner"] = manager.list()
    d["inner"].append("x")
    assert d["inner"][:] == ["x"]


def test_namespace_value_array(manager: Any) -> None:
    ns = manager.Namespace(a=1)
    ns.b = 2
    assert (ns.a, ns.b) == (1, 2) and str(ns) == "Namespace(a=1, b=2)"
    with pytest.raises(AttributeError):
        ns.c  # noqa: B018
    v = manager.Value("i", 1)
    v.value += 1
    assert v.value == 2 and v.get() == 2
    arr = manager.Array("i", [1, 2])
    arr[0] = 5
    assert len(arr) == 2 and arr[0] == 5


def test_sync_and_queue(manager: Any) -> None:
    lock = manager.Lock()
    assert lock.acquire() and not lock.acquire(False)
    lock.release()
    ev = manager.Event()
    assert not ev.is_set() and not ev.wait(0.01)
    ev.set()
    assert ev.wait(1)
    q = manager.Queue()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    q.put(1)
    assert q.get() == 1
    b = manager.Barrier(1)
    assert b.parties == 1 and b.wait() == 0


def test_errors(mp: ModuleType, manager: Any) -> None:
    managers = importlib.import_module(mp.__name__ + ".managers")
    d = manager.dict()
    with pytest.raises(managers.RemoteError):
        d._callmethod("no_such_method")
    with pytest.raises(mp.ProcessError):
        manager.start()
    with pytest.raises(TypeError):
        managers.SyncManager(authkey="not bytes")


class _Thing:
    def __init__(self, n: int) -> None:
        self.n = n

    def get(self) -> int:
        return self.n

    def _hidden(self) -> int:
        return 0


def test_register_auto_proxy(mp: ModuleType) -> None:
    managers = importlib.import_module(mp.__name__ + ".managers")

    class M(managers.BaseManager):  # type: ignore[name-defined,misc]
        pass

    M.register("Thing", _Thing)
    with M(ctx=mp.get_context("fork")) as m:
        t = m.Thing(5)
        assert t.get() == 5 and not hasattr(t, "_hidden")
        assert t._getvalue().n == 5


def test_remote_wrong_authkey(mp: ModuleType) -> None:
    managers = importlib.import_module(mp.__name__ + ".managers")
    m = managers.SyncManager(address=("127.0.0.1", 0), authkey=b"right", ctx=mp.get_context("fork"))
    m.start()
    try:
        good = managers.SyncManager(address=m.address, authkey=b"right")
        good.connect()
        assert good.list([1])[:] == [1]
        bad = managers.SyncManager(address=m.address, authkey=b"wrong")
        with pytest.raises(mp.AuthenticationError):
            bad.connect()
    finally:
        m.shutdown()


def _child(d: Any, lst: Any) -> None:
    d["child"] = True
    lst.append(1)


def test_proxies_in_a_child(mp: ModuleType, start_method: str) -> None:
    ctx = mp.get_context(start_method)
    with ctx.Manager() as m:
        d, lst = m.dict(), m.list()
        p = ctx.Process(target=_child, args=(d, lst))
        p.start()
        p.join(60)
        assert p.exitcode == 0 and d["child"] is True and lst[:] == [1]
