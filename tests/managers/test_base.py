"""BaseManager: register, start/connect/get_server, lifecycle errors, bad input; the wire."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import procly
from procly import ProcessError
from procly._managers import _wire
from procly.errors import FrameError
from procly.managers import (
    AutoProxy,
    BaseManager,
    BaseProxy,
    IteratorProxy,
    MakeProxyType,
    RemoteError,
    SyncManager,
    Token,
)


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def increment(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def numbers(self) -> Iterator[int]:
        return iter(range(self.value))

    def child(self) -> Counter:
        return Counter(self.value * 10)

    def _private(self) -> str:
        return "hidden"

    def fail(self) -> None:
        raise ValueError("as asked")


class CounterProxy(BaseProxy):
    _exposed_ = ("increment", "numbers", "child")
    _method_to_typeid_ = {"numbers": "Iterator", "child": "Counter"}

    def increment(self, by: int = 1) -> int:
        return int(self._callmethod("increment", (by,)))

    def numbers(self) -> Any:
        return self._callmethod("numbers")

    def child(self) -> Any:
        return self._callmethod("child")


_INIT: dict[str, Any] = {}


def _init(value: str) -> None:
    _INIT["value"] = value
    os.environ["PROCLY_MGR_INIT"] = value


def _initialized() -> str:
    return os.environ.get("PROCLY_MGR_INIT", "")


class MyManager(BaseManager):
    pass


MyManager.register("Counter", Counter, CounterProxy)
MyManager.register("AutoCounter", Counter)
MyManager.register("Iterator", proxytype=IteratorProxy, create_method=False)
MyManager.register("initialized", _initialized)
MyManager.register("Hidden", Counter, exposed=("increment",))


@pytest.fixture
def my_manager() -> Iterator[MyManager]:
    m = MyManager(ctx=procly.get_context("fork"))
    m.start(_init, ("yes",))
    try:
        yield m
    finally:
        m.shutdown()


def test_registered_type_with_proxytype_and_method_to_typeid(my_manager: MyManager) -> None:
    c = my_manager.Counter(3)  # type: ignore[attr-defined]
    assert isinstance(c, CounterProxy)
    assert c.increment() == 4 and c.increment(by=2) == 6
    assert list(c.numbers()) == [0, 1, 2, 3, 4, 5]
    child = c.child()
    assert isinstance(child, CounterProxy) and child.increment() == 61


def test_auto_proxy_exposes_public_methods(my_manager: MyManager) -> None:
    c = my_manager.AutoCounter(1)  # type: ignore[attr-defined]
    assert c.increment(5) == 6
    assert hasattr(c, "numbers") and not hasattr(c, "_private")
    with pytest.raises(ValueError, match="as asked"):
        c.fail()
    with pytest.raises(RemoteError):
        c._callmethod("_private")


def test_exposed_limits_the_methods(my_manager: MyManager) -> None:
    c = my_manager.Hidden()  # type: ignore[attr-defined]
    assert c.increment() == 1
    assert not hasattr(c, "fail")
    with pytest.raises(RemoteError, match="not in exposed"):
        c._callmethod("fail")


def test_initializer_runs_in_the_server(my_manager: MyManager) -> None:
    assert my_manager.initialized()._getvalue() == "yes"  # type: ignore[attr-defined]
    assert "value" not in _INIT  # it ran over there, not here


def test_create_method_false_and_register_is_per_class() -> None:
    assert not hasattr(MyManager, "Iterator")
    assert "Counter" in MyManager._registry and "Counter" not in BaseManager._registry
    assert "dict" in SyncManager._registry and "dict" not in MyManager._registry


def test_make_proxy_type_and_auto_proxy_are_cached() -> None:
    a = MakeProxyType("Thing", ("x", "y"))
    assert a is MakeProxyType("Thing", ("x", "y")) and a._exposed_ == ("x", "y")
    assert issubclass(a, BaseProxy)
    assert callable(AutoProxy)
    t = Token("dict", "/tmp/x", 1)
    assert "typeid='dict'" in repr(t)


def test_get_server_serve_and_connect() -> None:
    m = SyncManager(address=("127.0.0.1", 0), authkey=b"k")
    server = m.get_server()
    exits: list[BaseException] = []

    def serve() -> None:
        try:
            server.serve_forever()
        except BaseException as exc:
            exits.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        client = SyncManager(address=server.address, authkey=b"k")
        client.connect()
        assert client.address == server.address
        d = client.dict()
        d["x"] = 1
        assert d.copy() == {"x": 1}
        assert client._number_of_objects() == 1
        assert "refcount=1" in client._debug_info()
        client._request("shutdown")
        thread.join(10)
        assert not thread.is_alive()
        assert len(exits) == 1 and isinstance(exits[0], SystemExit)  # as in the stdlib
    finally:
        server.stop()


def test_lifecycle_errors() -> None:
    m = SyncManager(ctx=procly.get_context("fork"))
    with pytest.raises(ProcessError, match="not yet started"):
        m.dict()
    m.start()
    try:
        with pytest.raises(ProcessError, match="Already started"):
            m.start()
        with pytest.raises(ProcessError, match="Already started"):
            m.get_server()
    finally:
        m.shutdown()
    with pytest.raises(ProcessError, match="shut down"):
        m.start()
    with pytest.raises(ProcessError), m:
        pass
    m.join(1)


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="initializer"):
        SyncManager().start(initializer=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="serializer"):
        SyncManager(serializer="xmlrpclib")
    with pytest.raises(ValueError, match="address"):
        SyncManager(address=42)
    with pytest.raises(TypeError, match="authkey"):
        SyncManager(authkey="text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="typeid"):
        MyManager.register(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="method_to_typeid"):
        MyManager.register("Bad", Counter, method_to_typeid={"child": 3})  # type: ignore[dict-item]


def _die() -> None:
    os._exit(3)


def test_server_that_dies_at_start_is_reported() -> None:
    m = SyncManager(ctx=procly.get_context("fork"))
    with pytest.raises(ProcessError, match="exit code 3"):
        m.start(_die)


def test_connect_to_nothing_is_a_connection_error(tmp_path: Any) -> None:
    with pytest.raises(ConnectionError):
        SyncManager(address=str(tmp_path / "nothing"), authkey=b"k").connect()
    with pytest.raises(FileNotFoundError):  # still what the standard library raised
        SyncManager(address=str(tmp_path / "nothing"), authkey=b"k").connect()


# -- the wire ------------------------------------------------------------------------------


def test_channel_frames_small_large_and_batched() -> None:
    a, b = socket.socketpair()
    ca, cb = _wire.Channel(a), _wire.Channel(b)
    try:
        big = os.urandom(300_000)
        results: list[bytes] = []
        reader = threading.Thread(target=lambda: results.extend(cb.recv_frame() for _ in range(4)))
        reader.start()
        ca.send_frames([b"one", b"two"])
        ca.send_frame(big)
        ca.send_frame(b"")
        reader.join(10)
        assert results == [b"one", b"two", big, b""]
        assert cb.take_frame() is None
    finally:
        ca.close()
        cb.close()


def test_channel_rejects_oversized_and_reports_eof() -> None:
    a, b = socket.socketpair()
    ca, cb = _wire.Channel(a), _wire.Channel(b, max_frame=10)
    try:
        ca.send_frame(b"x" * 11)
        with pytest.raises(FrameError):
            cb.recv_frame()
        with pytest.raises(FrameError):
            _wire.Channel(socket.socket(), max_frame=1).send_frame(b"xx")
        ca.sock.sendall(b"\x00\x00")  # half a header, then the peer goes away
        ca.close()
        cb2 = _wire.Channel(b)
        with pytest.raises(EOFError):
            cb2.recv_frame()
    finally:
        ca.close()
        cb.close()


def test_family_of() -> None:
    assert _wire.family_of("/tmp/x") == socket.AF_UNIX
    assert _wire.family_of(("127.0.0.1", 1)) == socket.AF_INET
    assert _wire.family_of(("::1", 1, 0, 0)) == socket.AF_INET6
    with pytest.raises(ValueError):
        _wire.family_of(3)


def test_manager_without_context_uses_the_default_start_method() -> None:
    m = SyncManager()
    m.start()
    try:
        assert m._process is not None and m._process.name.startswith("SyncManager-")
        assert m.list([1])[:] == [1]
        with m.Pool(1) as pool:  # the default context's pool, in the server
            assert pool.apply(abs, (-2,)) == 2
    finally:
        m.shutdown()


def test_factory_errors_are_raised_as_themselves(my_manager: MyManager) -> None:
    with pytest.raises(TypeError):
        my_manager.Counter("not a number", "too", "many")  # type: ignore[attr-defined]
    with pytest.raises(RemoteError, match="unknown typeid"):
        my_manager._create("NoSuchType")
