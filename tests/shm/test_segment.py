"""SharedMemory: errors, attaching from children, and the lifecycle under SIGKILL."""

from __future__ import annotations

import os
import pickle
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

import procly
from procly._proc import _tracker
from procly.shared_memory import SharedMemory


def exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll *predicate* until true (a bounded wait on another process's progress)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# -- single process --------------------------------------------------------------------------


def test_create_write_attach_read() -> None:
    shm = SharedMemory(create=True, size=100)
    try:
        assert shm.size == 100
        assert shm.name.startswith(os.environ["PROCLY_NAME_PREFIX"])
        assert "/" not in shm.name
        assert shm.buf is not None
        shm.buf[:5] = b"hello"
        other = SharedMemory(shm.name)
        assert other.size == 100
        assert other.buf is not None
        assert bytes(other.buf[:5]) == b"hello"
        assert repr(other) == f"SharedMemory({shm.name!r}, size=100)"
        other.close()
        assert other.buf is None
        other.close()  # twice is fine
    finally:
        shm.close()
        shm.unlink()


def test_explicit_name_with_and_without_slash() -> None:
    from procly._os._names import new_name

    name = new_name("s")
    shm = SharedMemory(name, create=True, size=10)
    try:
        assert shm.name == name
        slash = SharedMemory("/" + name)
        assert slash.name == "/" + name and slash.size == 10
        slash.close()
    finally:
        shm.close()
        shm.unlink()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({}, ValueError, "'name' can only be None if create=True"),
        ({"create": True}, ValueError, "different from zero"),
        ({"create": True, "size": -1}, ValueError, "positive integer"),
        ({"name": "procly-no-such-segment-x"}, FileNotFoundError, "procly-no-such"),
        ({"name": "a/b"}, OSError, "invalid"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        SharedMemory(**kwargs)


def test_create_existing_name_and_double_unlink() -> None:
    shm = SharedMemory(create=True, size=10)
    try:
        with pytest.raises(FileExistsError):
            SharedMemory(shm.name, create=True, size=10)
    finally:
        shm.close()
        shm.unlink()
    with pytest.raises(FileNotFoundError):
        shm.unlink()
    assert not exists(shm.name)


def test_close_refuses_while_views_exist() -> None:
    shm = SharedMemory(create=True, size=16)
    assert shm.buf is not None
    view = shm.buf[2:4]
    with pytest.raises(BufferError):
        shm.close()
    view.release()
    shm.close()
    shm.unlink()


def test_pickle_is_the_name_and_attaches() -> None:
    shm = SharedMemory(create=True, size=1 << 20)
    try:
        data = pickle.dumps(shm)
        assert len(data) < 300
        other = pickle.loads(data)
        assert other.name == shm.name and other.size == shm.size
        other.buf[0] = 9
        assert shm.buf is not None and shm.buf[0] == 9
        other.close()
    finally:
        shm.close()
        shm.unlink()


def test_untracked_is_left_to_the_caller() -> None:
    shm = SharedMemory(create=True, size=10, track=False)
    try:
        assert _tracker._query("shm", shm.name) is None
    finally:
        shm.close()
        shm.unlink()


# -- children ----------------------------------------------------------------------------------


def write_through_handle(shm: SharedMemory, value: int) -> None:
    assert shm.buf is not None
    shm.buf[0] = value
    shm.close()


def write_by_name(name: str, value: int) -> None:
    shm = SharedMemory(name)
    assert shm.buf is not None
    shm.buf[1] = value
    shm.close()


def test_attach_from_child(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    shm = SharedMemory(create=True, size=64)
    try:
        p = ctx.Process(target=write_through_handle, args=(shm, 7))
        p.start()
        p.join()
        assert p.exitcode == 0
        q = ctx.Process(target=write_by_name, args=(shm.name, 8))
        q.start()
        q.join()
        assert q.exitcode == 0
        assert shm.buf is not None
        assert bytes(shm.buf[:2]) == b"\x07\x08"
    finally:
        shm.close()
        shm.unlink()


def keep_using(shm: SharedMemory, conn: Any) -> None:
    """Report, wait for 'go' (the parent unlinked meanwhile), write, report again."""
    assert shm.buf is not None
    conn.send("attached")
    conn.recv()
    shm.buf[0] = 99
    conn.send(str(shm.buf[0]))
    shm.close()


def test_unlinked_by_creator_while_user_holds_it(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    shm = SharedMemory(create=True, size=64)
    here, there = ctx.Pipe()
    p = ctx.Process(target=keep_using, args=(shm, there))
    p.start()
    try:
        assert here.recv() == "attached"
        shm.unlink()
        assert not exists(shm.name)
        here.send("go")
        assert here.recv() == "99"
        assert shm.buf is not None and shm.buf[0] == 99  # still the same memory
    finally:
        p.join()
        shm.close()
    assert p.exitcode == 0


def create_and_block(conn: Any) -> None:
    shm = SharedMemory(create=True, size=64)
    conn.send(shm.name)
    conn.recv()  # until killed


def attach_and_block(name: str, conn: Any) -> None:
    shm = SharedMemory(name)
    _tracker.sync()
    conn.send("attached")
    conn.recv()  # until killed
    shm.close()


def pins(name: str) -> int:
    q = _tracker._query("shm", name)
    return 0 if q is None else q[0]


def test_creator_killed_then_user_killed(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    _tracker.ensure_running()  # one tracker for this whole tree, forkserver included
    a_here, a_there = ctx.Pipe()
    b_here, b_there = ctx.Pipe()
    creator = ctx.Process(target=create_and_block, args=(a_there,))
    creator.start()
    name = a_here.recv()
    user = ctx.Process(target=attach_and_block, args=(name, b_there))
    user.start()
    try:
        assert b_here.recv() == "attached"
        os.kill(creator.pid, signal.SIGKILL)  # type: ignore[arg-type]
        creator.join()
        wait_until(lambda: pins(name) == 0)  # the tracker saw the creator go
        assert exists(name), "removed while a user still had it mapped"
        os.kill(user.pid, signal.SIGKILL)  # type: ignore[arg-type]
        user.join()
        wait_until(lambda: not exists(name))
    finally:
        for p in (creator, user):
            if p.is_alive():
                p.kill()
            p.join()


def test_user_killed_creator_keeps_segment(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    _tracker.ensure_running()
    shm = SharedMemory(create=True, size=64)
    here, there = ctx.Pipe()
    user = ctx.Process(target=attach_and_block, args=(shm.name, there))
    user.start()
    try:
        assert here.recv() == "attached"
        os.kill(user.pid, signal.SIGKILL)  # type: ignore[arg-type]
        user.join()
        wait_until(lambda: _tracker._query("shm", shm.name) == (1, 1, 0))
        assert exists(shm.name)
        assert shm.buf is not None
        shm.buf[0] = 1
    finally:
        if user.is_alive():
            user.kill()
        user.join()
        shm.close()
        shm.unlink()
