"""Remote managers, authentication and a server that survives hostile or dying peers."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import procly
from procly import AuthenticationError
from procly._managers import _wire
from procly._managers._server import Server
from procly.managers import BaseManager, SyncManager

KEY = b"correct horse battery staple"


@pytest.fixture
def tcp_manager() -> Iterator[SyncManager]:
    """A started manager on loopback TCP with an explicit authkey."""
    m = SyncManager(address=("127.0.0.1", 0), authkey=KEY, ctx=procly.get_context("fork"))
    m.start()
    try:
        yield m
    finally:
        m.shutdown()


@pytest.fixture
def thread_server() -> Iterator[Server]:
    """A server in a thread of this process, with a short handshake deadline."""
    server = Server(SyncManager._registry, ("127.0.0.1", 0), KEY, handshake_timeout=0.5)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(10)
        assert not thread.is_alive()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def server_log() -> Iterator[_Records]:
    handler = _Records()
    logger = procly.get_logger()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _client(address: Any, key: bytes = KEY) -> SyncManager:
    m = SyncManager(address=address, authkey=key)
    m.connect()
    return m


def _works(address: Any) -> None:
    """A fresh client (its own thread, so its own connection) can still do real work."""
    result: list[Any] = []

    def go() -> None:
        try:
            d = _client(address).dict()
            d["k"] = 1
            result.append(d["k"])
        except BaseException as exc:  # reported in the calling thread
            result.append(exc)

    t = threading.Thread(target=go)
    t.start()
    t.join(20)
    if result and isinstance(result[0], BaseException):
        raise result[0]
    assert result == [1]


def test_remote_connect_on_loopback(tcp_manager: SyncManager) -> None:
    host, port = tcp_manager.address
    assert host == "127.0.0.1" and port > 0
    other = _client((host, port))
    d = other.dict(a=1)
    shared = tcp_manager.list()
    d["shared"] = shared
    d["shared"].append("x")
    assert shared[:] == ["x"] and d["a"] == 1


def _serve_queue_manager(address: Any, key: bytes, ready: Any) -> None:
    import queue

    q: queue.Queue[Any] = queue.Queue()

    class QueueManager(BaseManager):
        pass

    QueueManager.register("get_queue", callable=lambda: q)
    server = QueueManager(address=address, authkey=key).get_server()
    ready.send(server.address)
    server.serve_forever()


class _RemoteQueueManager(BaseManager):
    pass


_RemoteQueueManager.register("get_queue")


def test_docs_remote_example(start_method: str) -> None:
    """The documentation's remote manager: get_server().serve_forever() in one process, two
    clients connecting by (address, authkey)."""
    ctx = procly.get_context(start_method)
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_serve_queue_manager, args=(("127.0.0.1", 0), KEY, writer))
    p.start()
    try:
        address = reader.recv()
        producer = _RemoteQueueManager(address=address, authkey=KEY)
        producer.connect()
        producer.get_queue().put("hello")
        consumer = _RemoteQueueManager(address=address, authkey=KEY)
        consumer.connect()
        assert consumer.get_queue().get(timeout=10) == "hello"
        producer._request("shutdown")
        p.join(10)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()


def test_wrong_authkey_is_refused_and_server_survives(tcp_manager: SyncManager) -> None:
    with pytest.raises(AuthenticationError):
        _client(tcp_manager.address, b"wrong key")
    with pytest.raises(TypeError):
        SyncManager(address=tcp_manager.address, authkey="not bytes")  # type: ignore[arg-type]
    _works(tcp_manager.address)


def test_stalled_handshake_does_not_block_others(tcp_manager: SyncManager) -> None:
    idle = [socket.create_connection(tcp_manager.address) for _ in range(20)]
    try:
        start = time.monotonic()
        _works(tcp_manager.address)
        assert time.monotonic() - start < 4.0  # well before the 5 s handshake deadline
    finally:
        for s in idle:
            s.close()


def test_handshake_deadline_closes_the_idle_peer(thread_server: Server) -> None:
    sock = socket.create_connection(thread_server.address)
    sock.settimeout(10)
    try:
        challenge = sock.recv(4096)  # the server speaks first
        assert b"#CHALLENGE#" in challenge
        assert sock.recv(4096) == b""  # ... and hangs up after handshake_timeout
    finally:
        sock.close()


def test_trickling_peer_is_cut_off_at_the_total_deadline(thread_server: Server) -> None:
    """One byte every 0.1 s never completes the answer: the 0.5 s total deadline (not a
    per-read timeout) ends it."""
    import select

    sock = socket.create_connection(thread_server.address)
    sock.settimeout(10)
    try:
        sock.recv(4096)
        start = time.monotonic()
        while time.monotonic() - start < 5:
            try:
                sock.send(b"\x00")
            except OSError:
                break
            if select.select([sock], [], [], 0.1)[0] and sock.recv(4096) == b"":
                break
        assert time.monotonic() - start < 5, "the server never hung up"
    finally:
        sock.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff" * 64,  # a length of about 18 EiB
        struct.pack("!Q", 1 << 40) + b"x",  # a length far beyond the handshake limit
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_garbage_before_authentication(thread_server: Server, garbage: bytes) -> None:
    sock = socket.create_connection(thread_server.address)
    sock.settimeout(10)
    try:
        sock.recv(4096)
        sock.sendall(garbage)
        data = sock.recv(4096)
        while data:  # the server answers #FAILURE# at most, then closes
            assert b"#FAILURE#" in data or data.startswith(b"\x00")
            data = sock.recv(4096)
    finally:
        sock.close()
    _works(thread_server.address)


def _authenticated_socket(address: Any) -> _wire.Channel:
    return _wire.connect(address, KEY)


@pytest.mark.parametrize(
    "frame",
    [
        b"not a pickle at all",
        pickle.dumps("a pickle but not a request"),
        pickle.dumps((None,)),
    ],
)
def test_malformed_frame_after_authentication(
    thread_server: Server, server_log: _Records, frame: bytes
) -> None:
    ch = _authenticated_socket(thread_server.address)
    try:
        ch.send_frame(pickle.dumps((None, "hello", (os.urandom(16), os.getpid()), {})))
        ch.send_frame(frame)
        with pytest.raises(EOFError):
            ch.recv_frame()
    finally:
        ch.close()
    _works(thread_server.address)
    assert any("malformed request" in m for m in server_log.messages)


def test_oversized_frame_after_authentication(thread_server: Server, server_log: _Records) -> None:
    ch = _authenticated_socket(thread_server.address)
    try:
        ch.sock.sendall(struct.pack("!Q", (1 << 63) + 5))
        with pytest.raises(EOFError):
            ch.recv_frame()
    finally:
        ch.close()
    _works(thread_server.address)
    assert any("exceeds the limit" in m for m in server_log.messages)


def test_flood_of_connections(thread_server: Server) -> None:
    flood = []
    try:
        for _ in range(100):
            flood.append(socket.create_connection(thread_server.address))
        _works(thread_server.address)
    finally:
        for s in flood:
            s.close()


def test_pending_handshakes_are_capped(server_log: _Records) -> None:
    server = Server(SyncManager._registry, None, KEY, handshake_timeout=30, max_pending=3)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    idle = []
    try:
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX)
            s.connect(server.address)
            s.recv(4096)  # its handshake thread is running
            idle.append(s)
        extra = socket.socket(socket.AF_UNIX)
        extra.connect(server.address)
        extra.settimeout(10)
        assert extra.recv(4096) == b""  # refused: closed at once
        extra.close()
        assert any("refusing" in m for m in server_log.messages)
        for s in idle:
            s.close()
        idle.clear()
        deadline = time.monotonic() + 10
        while True:  # the freed slots become available again
            try:
                _works(server.address)
                break
            except (EOFError, OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise
    finally:
        for s in idle:
            s.close()
        server.stop()
        thread.join(10)


def _block_on_queue(q: Any, d: Any, ready: Any) -> None:
    d["child"] = os.getpid()
    ready.send("calling")
    q.get()  # blocks in the server until the child is killed


def test_client_killed_mid_call(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with ctx.Manager() as m:
        q, d = m.Queue(), m.dict()
        ready, ready_w = ctx.Pipe(duplex=False)  # a pipe, not an Event: the child is killed
        base = m._number_of_objects()
        p = ctx.Process(target=_block_on_queue, args=(q, d, ready_w))
        p.start()
        assert ready.poll(30)
        p.kill()
        p.join(10)
        d["parent"] = 1  # the server is fine
        assert d["parent"] == 1
        q.put("wakes the dead client's server thread")
        # its references go once that thread notices the client is gone (asynchronously)
        deadline = time.monotonic() + 10
        while m._number_of_objects() != base and time.monotonic() < deadline:
            time.sleep(0.01)
        assert m._number_of_objects() == base


def _wait_forever(q: Any, ready: Any, out: Any) -> None:
    ready.send("calling")
    try:
        q.get()
    except BaseException as exc:
        out.send(type(exc).__mro__)


def test_server_killed_while_clients_wait(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    m = ctx.Manager()
    try:
        q = m.Queue()
        ready, ready_w = ctx.Pipe(duplex=False)
        reader, writer = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_wait_forever, args=(q, ready_w, writer))
        p.start()
        errors: list[BaseException] = []

        def parent_waits() -> None:
            try:
                q.get()
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=parent_waits)
        t.start()
        assert ready.poll(30)
        assert m._process is not None
        os.kill(m._process.pid, signal.SIGKILL)
        t.join(20)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], (EOFError, ConnectionError))
        assert reader.poll(20)
        mro = reader.recv()
        assert EOFError in mro or ConnectionError in mro
        p.join(20)
        with pytest.raises((EOFError, ConnectionError)):
            q.put(1)  # reconnecting finds nobody
    finally:
        m.shutdown()


def _serve_with_few_descriptors(report: Any) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    server = Server(SyncManager._registry, ("127.0.0.1", 0), KEY, handshake_timeout=0.5)
    records = _Records()
    procly.get_logger().addHandler(records)
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 12, hard))
    report.send(server.address)
    server.serve()
    report.send(records.messages)


def test_running_out_of_descriptors_does_not_kill_the_server() -> None:
    """accept() failing with EMFILE is logged and retried; the stalled connections time out
    and the server serves again, flood or not."""
    ctx = procly.get_context("fork")
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_serve_with_few_descriptors, args=(writer,))
    p.start()
    try:
        address = reader.recv()
        flood = [socket.create_connection(address) for _ in range(40)]
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    _works(address)
                    break
                except (AssertionError, EOFError, OSError):
                    if time.monotonic() > deadline:
                        raise
        finally:
            for s in flood:
                s.close()
        _client(address)._request("shutdown")
        assert reader.poll(10)
        assert any("accept failed" in m for m in reader.recv())  # the server did run out
        p.join(10)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()
            p.join()
