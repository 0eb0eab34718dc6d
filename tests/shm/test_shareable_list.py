"""ShareableList: the standard library's behaviour, exact str/bytes round-trips, children."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import procly
from procly.shared_memory import ShareableList, UnsupportedItemError


@pytest.fixture
def sl() -> Any:
    lst = ShareableList([1, 2.5, True, "héllo", b"ab\x00", None, ""])
    yield lst
    lst.shm.close()
    lst.shm.unlink()


def test_items_and_format(sl: ShareableList) -> None:
    assert list(sl) == [1, 2.5, True, "héllo", b"ab\x00", None, ""]
    assert len(sl) == 7
    assert sl.format == "qdxxxxxxx?8s8sxxxxxx?x8s"
    assert sl[-1] == "" and sl[-7] == 1
    assert repr(sl) == f"ShareableList({list(sl)!r}, name={sl.shm.name!r})"


def test_assignment_rules(sl: ShareableList) -> None:
    sl[0] = "abc"  # any supported type that fits the slot
    assert sl[0] == "abc" and sl.format.startswith("8s")
    sl[0] = 3.5
    assert sl[0] == 3.5
    sl[3] = "x" * 8  # a str slot of 8 bytes of capacity ... "héllo" took 6
    assert sl[3] == "x" * 8
    with pytest.raises(ValueError, match="exceeds available storage"):
        sl[3] = "x" * 20
    sl[5] = 7  # None slot takes a number
    assert sl[5] == 7
    sl[4] = b"\x00\x00"
    assert sl[4] == b"\x00\x00"  # trailing NULs survive (the stdlib strips them)


def test_index_errors_and_bad_types(sl: ShareableList) -> None:
    with pytest.raises(IndexError, match="index out of range"):
        sl[7]
    with pytest.raises(IndexError, match="assignment index out of range"):
        sl[-8] = 1
    with pytest.raises(TypeError):
        sl[1:2]  # type: ignore[index]
    with pytest.raises(UnsupportedItemError) as info:
        ShareableList([[1]])
    assert isinstance(info.value, KeyError) and isinstance(info.value, TypeError)
    with pytest.raises(UnsupportedItemError):
        sl[0] = {"a": 1}


def test_count_index(sl: ShareableList) -> None:
    assert sl.count(None) == 1
    assert sl.index(True) == 0  # 1 == True, as with list.index
    assert sl.index("héllo") == 3
    with pytest.raises(ValueError, match="99 not in this container"):
        sl.index(99)


def test_empty_and_attach_by_name() -> None:
    empty = ShareableList()
    try:
        assert len(empty) == 0 and list(empty) == [] and empty.format == ""
        other = ShareableList(name=empty.shm.name)
        assert len(other) == 0
        other.shm.close()
    finally:
        empty.shm.close()
        empty.shm.unlink()


def test_pickles_as_name(sl: ShareableList) -> None:
    data = pickle.dumps(sl)
    assert len(data) < 400
    copy = pickle.loads(data)
    copy[1] = 9.0
    assert sl[1] == 9.0
    copy.shm.close()


def child_edit(lst: ShareableList) -> None:
    lst[0] = lst[0] + 1
    lst[3] = "child"
    lst.shm.close()


def test_shared_with_child(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    lst = ShareableList([41, None, 0.0, "parent"])
    try:
        p = ctx.Process(target=child_edit, args=(lst,))
        p.start()
        p.join()
        assert p.exitcode == 0
        assert lst[0] == 42 and lst[3] == "child"
    finally:
        lst.shm.close()
        lst.shm.unlink()
