"""Shared ctypes: RawValue/RawArray/Value/Array/synchronized/copy semantics, errors, and
sharing with children under every start method."""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import pytest

import procly
from procly import sharedctypes
from procly._shm import _heap
from procly.errors import SerializationError


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_double), ("y", ctypes.c_int)]


def test_raw_value_and_array() -> None:
    v = procly.RawValue("i", 7)
    assert isinstance(v, ctypes.c_int) and v.value == 7
    d = procly.RawValue(ctypes.c_double)
    assert d.value == 0.0
    a = procly.RawArray("d", [1.0, 2.0, 3.0])
    assert a[:] == [1.0, 2.0, 3.0] and len(a) == 3
    z = procly.RawArray("i", 5)
    assert z[:] == [0] * 5
    p = procly.RawValue(Point, 1.5, 2)
    assert (p.x, p.y) == (1.5, 2)


def test_value_is_synchronized() -> None:
    v = procly.Value("i", 3)
    assert isinstance(v, sharedctypes.Synchronized)
    assert v.value == 3
    v.value += 1
    assert v.value == 4
    assert isinstance(v.get_obj(), ctypes.c_int)
    lock = v.get_lock()
    assert lock.acquire()
    assert lock.acquire()  # an RLock by default
    lock.release()
    lock.release()
    with v:
        v.value = 10
    assert "Synchronized wrapper for c_int(10)" in repr(v)


def test_array_slices_and_char_arrays() -> None:
    a = procly.Array("i", range(10))
    assert isinstance(a, sharedctypes.SynchronizedArray)
    assert a[2:5] == [2, 3, 4] and a[-1] == 9 and len(a) == 10
    a[2:4] = [20, 30]
    assert a[:4] == [0, 1, 20, 30]
    s = procly.Array("c", b"hello")
    assert isinstance(s, sharedctypes.SynchronizedString)
    assert s.value == b"hello" and s.raw == b"hello"
    s.value = b"hi"
    assert s.value == b"hi" and s.raw == b"hi\x00lo"
    with pytest.raises(IndexError):
        a[10]


def test_lock_argument() -> None:
    raw = procly.Value("d", 1.0, lock=False)
    assert isinstance(raw, ctypes.c_double)
    mine = threading.Lock()
    v = procly.Value("i", lock=mine)
    assert v.get_lock() is mine
    a = procly.Array("i", 3, lock=procly.Lock())
    assert a[:] == [0, 0, 0]
    with pytest.raises(AttributeError, match="has no method 'acquire'"):
        procly.Value("i", lock=5)
    with pytest.raises(AttributeError):
        procly.Array("i", 3, lock="nope")


def test_bad_typecodes_and_values() -> None:
    with pytest.raises(TypeError, match="bad typecode"):
        procly.RawValue("z")
    with pytest.raises(TypeError):
        procly.RawArray(int, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        procly.Value("i", "not an int")
    with pytest.raises(ValueError, match="non-negative"):
        procly.RawArray("i", -1)
    with pytest.raises(TypeError):
        procly.Array("i", [1, "x"])


def test_synchronized_and_copy() -> None:
    raw = procly.RawValue("i", 5)
    sync = sharedctypes.synchronized(raw)
    assert sync.value == 5 and sync.get_obj() is raw
    with pytest.raises(TypeError, match="already synchronized"):
        sharedctypes.synchronized(sync)
    p = sharedctypes.synchronized(procly.RawValue(Point, 2.5, 3))
    assert type(p).__name__ == "SynchronizedPoint" and (p.x, p.y) == (2.5, 3)
    p.x = 4.0
    assert p.get_obj().x == 4.0
    arr = procly.RawArray("i", [1, 2, 3])
    dup = sharedctypes.copy(arr)
    dup[0] = 100
    assert arr[0] == 1 and dup[:] == [100, 2, 3]


def test_not_picklable_outside_a_transport() -> None:
    from procly._serial import _pickler

    with pytest.raises(SerializationError, match="file descriptor"):
        _pickler.dumps(procly.RawValue("i", 1))
    # an ordinary ctypes object still pickles by value
    assert _pickler.loads(_pickler.dumps(ctypes.c_int(4)), []).value == 4


def test_heap_reuses_freed_blocks_zeroed() -> None:
    heap = _heap._Heap()
    b1 = heap.malloc(100)
    b1.view()[:] = b"x" * 100
    arena, off = b1.arena, b1.offset
    del b1
    b2 = heap.malloc(100)
    assert (b2.arena, b2.offset) == (arena, off)
    assert bytes(b2.view()) == bytes(100)
    big = heap.malloc(1 << 20)
    assert big.arena is not arena and big.size == 1 << 20
    assert len(heap.arenas) == 1


def bump(v: Any, arr: Any, raw: Any, n: int) -> None:
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    arr[0] = 42
    raw.value = b"from child"


def test_shared_with_children(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    v = ctx.Value("i", 0)
    arr = ctx.Array("i", 4)
    raw = ctx.RawArray("c", 16)
    procs = [ctx.Process(target=bump, args=(v, arr, raw, 200)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0]
    assert v.value == 400
    assert arr[0] == 42
    assert raw.value == b"from child"


def echo_through(conn: Any) -> None:
    a = conn.recv()
    a[1] = 11
    conn.send("done")


def test_through_a_connection(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    here, there = ctx.Pipe()
    p = ctx.Process(target=echo_through, args=(there,))
    p.start()
    try:
        a = ctx.RawArray("i", 3)
        here.send(a)
        assert here.recv() == "done"
        assert a[1] == 11
    finally:
        p.join()
        here.close()
        there.close()
