"""The same connection tests against the standard library and procly (the stdlib is the
reference: a difference shows up as one of the two parametrizations failing)."""

from __future__ import annotations

import importlib
import pickle
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@pytest.fixture(params=["multiprocessing", "procly"])
def mp(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


@pytest.fixture
def mpc(mp: ModuleType) -> ModuleType:
    """The ``connection`` submodule of the module under test."""
    return importlib.import_module(mp.__name__ + ".connection")


def _echo_child(conn: Any) -> None:
    while (obj := conn.recv()) is not None:
        conn.send(obj)


def test_pipe_round_trip_through_a_process(mp: ModuleType, start_method: str) -> None:
    ctx = mp.get_context(start_method)
    a, b = ctx.Pipe()
    process = ctx.Process(target=_echo_child, args=(b,))
    process.start()
    b.close()
    try:
        for obj in (1, "two", [3.0, {"four": (5,)}], b"six" * 1000, bytearray(b"seven")):
            a.send(obj)
            assert a.recv() == obj
        a.send(None)
    finally:
        process.join(30)
        a.close()
    assert process.exitcode == 0


def test_send_bytes_recv_bytes_and_offsets(mp: ModuleType) -> None:
    a, b = mp.Pipe()
    with a, b:
        a.send_bytes(b"0123456789", 3, 4)
        assert b.recv_bytes() == b"3456"
        a.send_bytes(memoryview(b"abc"))
        buf = bytearray(8)
        assert b.recv_bytes_into(buf, 2) == 3
        assert buf == bytearray(b"\0\0abc\0\0\0")
        a.send_bytes(b"0123456789")
        with pytest.raises(mp.BufferTooShort) as info:
            b.recv_bytes_into(buf, 1)
        assert info.value.args[0] == b"0123456789"
        with pytest.raises(ValueError):
            a.send_bytes(b"abc", 4)
        with pytest.raises(ValueError):
            a.send_bytes(b"abc", -1)
        with pytest.raises(ValueError):
            a.send_bytes(b"abc", 1, 5)
        with pytest.raises(ValueError):
            b.recv_bytes(-1)


def test_objects_and_bytes_interoperate(mp: ModuleType) -> None:
    a, b = mp.Pipe()
    with a, b:
        a.send_bytes(pickle.dumps({"x": 1}))
        assert b.recv() == {"x": 1}
        a.send([1, 2])
        assert pickle.loads(b.recv_bytes()) == [1, 2]
        a.send(b"payload")
        assert pickle.loads(b.recv_bytes()) == b"payload"


def test_maxlength_makes_the_end_unreadable(mp: ModuleType) -> None:
    a, b = mp.Pipe()
    with a, b:
        a.send_bytes(b"x" * 100)
        with pytest.raises(OSError, match="bad message length"):
            b.recv_bytes(10)
        assert not b.readable


def test_closed_and_one_way_errors(mp: ModuleType) -> None:
    r, w = mp.Pipe(duplex=False)
    with pytest.raises(OSError, match="connection is read-only"):
        r.send(1)
    with pytest.raises(OSError, match="connection is write-only"):
        w.recv()
    r.close()
    w.close()
    assert r.closed
    for call in (lambda: r.recv(), lambda: w.send(1), lambda: r.poll(), lambda: r.fileno()):
        with pytest.raises(OSError, match="handle is closed"):
            call()


def test_eof_and_poll(mp: ModuleType) -> None:
    a, b = mp.Pipe()
    assert b.poll() is False
    assert b.poll(0.01) is False
    a.send("x")
    assert b.poll(None) is True
    assert b.recv() == "x"
    a.close()
    assert b.poll(1) is True
    with pytest.raises(EOFError):
        b.recv()
    b.close()


def test_wait_returns_the_ready_ones(mp: ModuleType, mpc: ModuleType) -> None:
    a, b = mp.Pipe()
    c, d = mp.Pipe()
    with a, b, c, d:
        assert mpc.wait([b, d], timeout=0.01) == []
        a.send(1)
        assert mpc.wait([b, d], timeout=10) == [b]
        c.send(2)
        assert sorted(map(id, mpc.wait([b, d], timeout=10))) == sorted([id(b), id(d)])


def _serve(listener: Any, out: list[Any]) -> None:
    try:
        with listener.accept() as conn:
            out.append(conn.recv())
            conn.send("welcome")
    except BaseException as exc:
        out.append(exc)


@pytest.mark.parametrize("family", ["AF_UNIX", "AF_INET"])
def test_listener_client_with_authkey(mpc: ModuleType, family: str) -> None:
    out: list[Any] = []
    address = ("127.0.0.1", 0) if family == "AF_INET" else None
    with mpc.Listener(address, family=family, authkey=b"key") as listener:
        thread = threading.Thread(target=_serve, args=(listener, out))
        thread.start()
        with mpc.Client(listener.address, authkey=b"key") as conn:
            conn.send("hi")
            assert conn.recv() == "welcome"
        thread.join()
    assert out == ["hi"]


def test_wrong_authkey(mp: ModuleType, mpc: ModuleType, tmp_path: Path) -> None:
    out: list[Any] = []
    with mpc.Listener(str(tmp_path / "s"), authkey=b"key") as listener:
        thread = threading.Thread(target=_serve, args=(listener, out))
        thread.start()
        with pytest.raises(mp.AuthenticationError):
            mpc.Client(listener.address, authkey=b"other")
        thread.join()
    assert isinstance(out[0], mp.AuthenticationError)


def test_listener_bad_arguments(mpc: ModuleType, tmp_path: Path) -> None:
    # (a non-bytes authkey is a TypeError in both, but the stdlib checks it only after binding
    # or connecting: see tests/proc/test_listener.py for procly's)
    listener = mpc.Listener(str(tmp_path / "t"))
    listener.close()
    with pytest.raises(OSError):
        listener.accept()
    with pytest.raises(ValueError):
        mpc.Listener(family="AF_NOPE")
