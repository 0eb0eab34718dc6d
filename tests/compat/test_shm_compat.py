"""The same behavioural tests of shared memory and shared ctypes against the standard
library and procly (the docs are the spec)."""

from __future__ import annotations

import ctypes
import importlib
import pickle
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(params=["multiprocessing", "procly"])
def mp(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(str(request.param))


@pytest.fixture
def shm_mod(mp: ModuleType) -> ModuleType:
    return importlib.import_module(f"{mp.__name__}.shared_memory")


def _attach(shm_mod: ModuleType, name: str) -> Any:
    other = shm_mod.SharedMemory(name)
    if shm_mod.__name__.startswith("multiprocessing"):
        # the stdlib registers attachments with its tracker too (a known bug); undo it so
        # that its tracker does not report a leak at exit
        from multiprocessing import resource_tracker

        resource_tracker.unregister(other._name, "shared_memory")
    return other


def test_shared_memory_basics(shm_mod: ModuleType) -> None:
    shm = shm_mod.SharedMemory(create=True, size=32)
    try:
        assert shm.size == 32 and not shm.name.startswith("/")
        shm.buf[:3] = b"abc"
        other = _attach(shm_mod, shm.name)
        assert bytes(other.buf[:3]) == b"abc" and other.size == 32
        other.close()
        assert repr(shm) == f"SharedMemory({shm.name!r}, size=32)"
        with pytest.raises(FileExistsError):
            shm_mod.SharedMemory(shm.name, create=True, size=32)
    finally:
        shm.close()
        shm.unlink()
    assert shm.buf is None
    with pytest.raises(FileNotFoundError):
        shm.unlink()


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({}, ValueError),
        ({"create": True}, ValueError),
        ({"create": True, "size": -5}, ValueError),
        ({"name": "procly-compat-missing"}, FileNotFoundError),
    ],
)
def test_shared_memory_errors(shm_mod: ModuleType, kwargs: dict[str, Any], exc: type) -> None:
    with pytest.raises(exc):
        shm_mod.SharedMemory(**kwargs)


def test_shareable_list(shm_mod: ModuleType) -> None:
    sl = shm_mod.ShareableList([1, 2.5, True, "héllo", b"ab", None])
    try:
        assert list(sl) == [1, 2.5, True, "héllo", b"ab", None]
        assert sl.format == "qdxxxxxxx?8s8sxxxxxx?x"
        assert len(sl) == 6 and sl[-1] is None
        sl[0] = "xyz"
        sl[1] = 7
        assert sl[0] == "xyz" and sl[1] == 7
        with pytest.raises(ValueError):
            sl[3] = "much too long for the slot"
        with pytest.raises(IndexError):
            sl[6]
        with pytest.raises(IndexError):
            sl[6] = 1
        assert sl.count(None) == 1 and sl.index(b"ab") == 4
        with pytest.raises(ValueError):
            sl.index("absent")
        with pytest.raises(KeyError):
            shm_mod.ShareableList([[1, 2]])
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_shareable_list_pickles_as_name(shm_mod: ModuleType) -> None:
    sl = shm_mod.ShareableList([1, 2])
    try:
        data = pickle.dumps(sl)
        assert len(data) < 300
        if shm_mod.__name__.startswith("procly"):
            again = pickle.loads(data)
            again[0] = 5
            assert sl[0] == 5
            again.shm.close()
    finally:
        sl.shm.close()
        sl.shm.unlink()


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_double)]


def test_values_and_arrays(mp: ModuleType) -> None:
    v = mp.Value("i", 5)
    assert v.value == 5 and type(v).__name__ == "Synchronized"
    with v.get_lock():
        v.value += 1
    assert v.get_obj().value == 6
    assert isinstance(mp.Value("d", 1.5, lock=False), ctypes.c_double)
    with pytest.raises(AttributeError):
        mp.Value("i", lock=42)
    lock = mp.Lock()
    assert mp.Value("i", lock=lock).get_lock() is lock
    a = mp.Array("i", [1, 2, 3, 4])
    assert a[1:3] == [2, 3] and len(a) == 4 and type(a).__name__ == "SynchronizedArray"
    a[0:2] = [9, 8]
    assert a[:] == [9, 8, 3, 4]
    s = mp.Array("c", b"hey")
    assert s.value == b"hey" and s.raw == b"hey" and type(s).__name__ == "SynchronizedString"
    r = mp.RawArray("d", 3)
    assert r[:] == [0.0, 0.0, 0.0]
    rv = mp.RawValue(Pair, 1, 2.0)
    assert (rv.a, rv.b) == (1, 2.0)


def test_sharedctypes_module(mp: ModuleType) -> None:
    sc = importlib.import_module(f"{mp.__name__}.sharedctypes")
    p = sc.synchronized(sc.RawValue(Pair, 3, 4.0))
    assert type(p).__name__ == "SynchronizedPair" and (p.a, p.b) == (3, 4.0)
    arr = sc.RawArray("i", [1, 2])
    dup = sc.copy(arr)
    dup[0] = 7
    assert arr[0] == 1 and dup[0] == 7


def add_many(v: Any, n: int) -> None:
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def test_value_shared_with_children(mp: ModuleType) -> None:
    ctx = mp.get_context("fork")
    v = ctx.Value("i", 0)
    procs = [ctx.Process(target=add_many, args=(v, 300)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert v.value == 600
