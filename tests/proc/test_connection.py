"""Connection, Pipe and wait: behaviour within a process and across processes (all start methods)."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import procly
from procly import reduction
from procly._errors import FrameError, SerializationError
from procly._serial import _framing as fr
from procly.connection import Connection, Pipe, wait

# -- children (module level: spawn and forkserver import them) -------------------------------


def _echo(conn: Connection) -> None:
    # Under fork the child also inherits the parent's end, so EOF never comes: stop on None.
    while (obj := conn.recv()) is not None:
        conn.send(obj)


def _apply(conn: Connection) -> None:
    fn, arg = conn.recv()
    conn.send(fn(arg))


def _use_passed_connection(conn: Connection) -> None:
    other = conn.recv()
    other.send(("from child", os.getpid()))
    other.close()


def _send_forever(conn: Connection, size: int) -> None:
    conn.send_bytes(b"z" * size)  # blocks: the parent never reads it all
    time.sleep(3600)


def _write_to_handle(conn: Connection) -> None:
    fd = reduction.recv_handle(conn)
    os.write(fd, b"written by child")
    os.close(fd)


def _wait_then_exit(conn: Connection) -> None:
    conn.recv()


def _dupfd_child(wrapper: Any) -> None:
    fd = wrapper.detach()
    os.write(fd, b"dupfd")
    os.close(fd)


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[Connection, Connection]]:
    a, b = Pipe()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _start(start_method: str, target: Callable[..., None], *args: Any) -> Any:
    process = procly.get_context(start_method).Process(target=target, args=args)
    process.start()
    return process


def _finish(process: Any) -> None:
    process.join(30)
    if process.is_alive():
        process.kill()
        process.join(30)


def _in_thread(fn: Callable[..., Any], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args)
    thread.start()
    return thread


class Trace:
    """Unpickling it leaves a trace in a file: proof that something was (not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_leave_trace, (self.path,))


def _leave_trace(path: str) -> str:
    with open(path, "w") as f:
        f.write("unpickled")
    return path


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable refuses to be pickled")


# -- across processes -------------------------------------------------------------------------


def test_objects_round_trip_through_a_child(start_method: str) -> None:
    """The connection is a Process argument (pickled with its descriptor under spawn and
    forkserver); everything the child echoes comes back equal."""
    parent, child = Pipe()
    process = _start(start_method, _echo, child)
    child.close()
    try:
        array = np.arange(2_000_000, dtype=np.int64)
        objects: list[Any] = [
            1,
            "text",
            {"k": [1, 2.5, None]},
            b"bytes" * 300_000,
            bytearray(b"ba" * 100),
            array,
            (array[::3], memoryview(b"m" * 100_000)),
        ]
        for obj in objects:
            thread = _in_thread(parent.send, obj)  # big objects exceed the socket buffer
            back = parent.recv()
            thread.join()
            assert type(back) is type(obj)
            if isinstance(obj, np.ndarray):
                assert np.array_equal(back, obj) and back.flags.writeable
            elif isinstance(obj, tuple):
                assert np.array_equal(back[0], obj[0]) and bytes(back[1]) == bytes(obj[1])
            else:
                assert back == obj
        parent.send(None)
    finally:
        _finish(process)
    assert process.exitcode == 0


def test_closure_runs_in_child(start_method: str) -> None:
    parent, child = Pipe()
    process = _start(start_method, _apply, child)
    child.close()
    factor = 7
    try:
        parent.send((lambda x: x * factor, 6))
        assert parent.recv() == 42
    finally:
        parent.close()
        _finish(process)


def test_connection_sent_over_a_connection(start_method: str) -> None:
    parent, child = Pipe()
    mine, theirs = Pipe()
    process = _start(start_method, _use_passed_connection, child)
    child.close()
    try:
        parent.send(theirs)
        theirs.close()  # the child got its own descriptor
        assert mine.recv() == ("from child", process.pid)
        with pytest.raises(EOFError):
            mine.recv()
    finally:
        parent.close()
        mine.close()
        _finish(process)


def test_child_killed_mid_send_gives_frame_error_not_a_hang(start_method: str) -> None:
    parent, child = Pipe()
    process = _start(start_method, _send_forever, child, 64 << 20)
    child.close()
    try:
        assert parent.poll(30), "the child started sending"
        process.kill()
        process.join(30)
        with pytest.raises(FrameError, match="truncated"):
            parent.recv_bytes()
        with pytest.raises(EOFError):
            parent.recv_bytes()
    finally:
        parent.close()
        _finish(process)


def test_send_handle_and_recv_handle(start_method: str) -> None:
    parent, child = Pipe()
    process = _start(start_method, _write_to_handle, child)
    child.close()
    r, w = os.pipe()
    try:
        reduction.send_handle(parent, w, process.pid)
        os.close(w)
        assert os.read(r, 100) == b"written by child"
    finally:
        os.close(r)
        parent.close()
        _finish(process)


def test_dupfd_as_process_argument(start_method: str) -> None:
    # under fork the wrapper is inherited (detach duplicates); otherwise it is pickled
    r, w = os.pipe()
    try:
        process = _start(start_method, _dupfd_child, reduction.DupFd(w))
        os.close(w)
        assert os.read(r, 100) == b"dupfd"
        _finish(process)
    finally:
        os.close(r)


def test_wait_over_connections_sockets_fds_and_sentinels(start_method: str) -> None:
    parent, child = Pipe()
    process = _start(start_method, _wait_then_exit, child)
    child.close()
    quiet_a, quiet_b = Pipe()
    s1, s2 = socket.socketpair()
    r, w = os.pipe()
    try:
        objects: list[Any] = [quiet_a, s1, r, process.sentinel]
        assert wait(objects, timeout=0.05) == []
        s2.send(b"x")
        os.write(w, b"y")
        assert wait(objects, timeout=10) == [s1, r]
        s1.recv(1)
        os.read(r, 1)
        parent.send("exit now")
        assert wait(objects, timeout=30) == [process.sentinel]
        quiet_b.send(1)
        assert wait(objects, timeout=10) == [quiet_a, process.sentinel]
    finally:
        for obj in (parent, quiet_a, quiet_b, s1, s2):
            obj.close()
        os.close(r)
        os.close(w)
        _finish(process)


# -- within one process -----------------------------------------------------------------------


def test_unpicklable_object_sends_nothing_and_the_connection_stays_usable(
    pipe: tuple[Connection, Connection],
) -> None:
    a, b = pipe
    with pytest.raises(SerializationError) as info:
        a.send({"fine": 1, "bad": Unpicklable()})
    assert "Unpicklable" in str(info.value) and "['bad']" in str(info.value)
    assert not b.poll(0.05), "nothing reached the peer"
    a.send("next")
    assert b.recv() == "next"


def _base_chain(obj: Any) -> list[Any]:
    chain = []
    while obj is not None:
        chain.append(obj)
        obj = getattr(obj, "base", None) if not isinstance(obj, memoryview) else obj.obj
    return chain


def test_received_array_lives_in_the_receive_buffer(pipe: tuple[Connection, Connection]) -> None:
    """Zero extra copies: the array is a view of the buffer the kernel wrote into."""
    import mmap

    a, b = pipe
    array = np.arange(1 << 20, dtype=np.float32)
    thread = _in_thread(a.send, array)
    back = b.recv()
    thread.join()
    assert np.array_equal(back, array)
    assert any(isinstance(x, (mmap.mmap, bytearray)) for x in _base_chain(back))
    big = os.urandom(1 << 16) * 40
    thread = _in_thread(a.send_bytes, big)
    assert b.recv_bytes() == big
    thread.join()


def test_connection_needs_a_transport_to_pickle(pipe: tuple[Connection, Connection]) -> None:
    a, _ = pipe
    with pytest.raises(SerializationError, match="file descriptor"):
        reduction.ForkingPickler.dumps(a)


def test_connection_with_read_ahead_data_refuses_to_travel() -> None:
    a, b = Pipe()
    carrier, far = Pipe()
    with a, b, carrier, far:
        a.send(1)
        a.send(2)
        assert b.recv() == 1  # 2 is read ahead, in b's buffer
        with pytest.raises(SerializationError, match="not yet consumed"):
            carrier.send(b)
        assert not far.poll(0.05)
        assert b.recv() == 2
        carrier.send(b)  # nothing pending: it travels
        moved = far.recv()
        a.send("to the moved end")
        assert moved.recv() == "to the moved end"
        moved.close()


def test_connection_over_plain_pipe_descriptors() -> None:
    r, w = os.pipe()
    reader, writer = Connection(r, writable=False), Connection(w, readable=False)
    other_a, other_b = Pipe()
    with reader, writer, other_a, other_b:
        writer.send({"over": "os.pipe"})
        writer.send_bytes(b"raw")
        assert reader.recv() == {"over": "os.pipe"}
        assert reader.recv_bytes() == b"raw"
        with pytest.raises(SerializationError, match="Unix socket"):
            writer.send(other_a)
        assert not reader.poll(0)
        writer.close()
        with pytest.raises(EOFError):
            reader.recv()


def test_use_after_close_is_handle_is_closed(pipe: tuple[Connection, Connection]) -> None:
    a, _ = pipe
    a.close()
    a.close()  # idempotent
    assert a.closed
    for call in (
        lambda: a.send(1),
        a.recv,
        lambda: a.send_bytes(b"x"),
        a.recv_bytes,
        lambda: a.recv_bytes_into(bytearray(1)),
        a.poll,
        a.fileno,
    ):
        with pytest.raises(OSError, match="handle is closed"):
            call()


def test_one_way_pipe_refuses_the_wrong_direction() -> None:
    r, w = Pipe(duplex=False)
    with r, w:
        assert (r.readable, r.writable, w.readable, w.writable) == (True, False, False, True)
        with pytest.raises(OSError, match="read-only"):
            r.send(1)
        with pytest.raises(OSError, match="write-only"):
            w.recv()
        with pytest.raises(OSError, match="write-only"):
            w.poll()
        w.send([1, 2])
        assert r.recv() == [1, 2]


def test_eof_when_the_other_end_closes(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    a.send("last")
    a.close()
    assert b.recv() == "last"
    assert b.poll(0), "EOF counts as readable so that recv can report it"
    with pytest.raises(EOFError):
        b.recv()


def test_poll_timeout_bounds(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    started = time.monotonic()
    assert b.poll(0.2) is False
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 10
    assert b.poll(-1) is False
    a.send(1)
    assert b.poll(None) is True
    assert b.poll() is True
    b.recv()


def test_recv_bytes_maxlength(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    a.send_bytes(b"12345")
    assert b.recv_bytes(5) == b"12345"
    a.send_bytes(b"123456")
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(5)
    assert not b.readable, "like the stdlib: the stream is mid-message, reading stops"


def test_send_bytes_offset_and_size(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    a.send_bytes(b"0123456789", 2)
    a.send_bytes(b"0123456789", 2, 3)
    a.send_bytes(np.arange(4, dtype=np.int32), 4, 8)  # offsets count bytes
    a.send_bytes(b"")
    assert b.recv_bytes() == b"23456789"
    assert b.recv_bytes() == b"234"
    assert np.frombuffer(b.recv_bytes(), dtype=np.int32).tolist() == [1, 2]
    assert b.recv_bytes() == b""
    for kwargs, message in (
        ({"offset": -1}, "offset is negative"),
        ({"offset": 11}, "buffer length < offset"),
        ({"offset": 1, "size": -1}, "size is negative"),
        ({"offset": 5, "size": 6}, "buffer length < offset"),
    ):
        with pytest.raises(ValueError, match=message):
            a.send_bytes(b"0123456789", **kwargs)
    assert not b.poll(0)


def test_recv_bytes_into_offsets_and_buffer_too_short(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    buf = bytearray(10)
    a.send_bytes(b"abc")
    assert b.recv_bytes_into(buf) == 3
    a.send_bytes(b"xyz")
    assert b.recv_bytes_into(buf, 7) == 3
    assert buf == bytearray(b"abc\0\0\0\0xyz")
    ints = np.zeros(4, dtype=np.int32)
    a.send_bytes(np.array([7, 8], dtype=np.int32))
    assert b.recv_bytes_into(ints, 8) == 8
    assert ints.tolist() == [0, 0, 7, 8]
    a.send_bytes(b"too long for it")
    with pytest.raises(procly.BufferTooShort) as info:
        b.recv_bytes_into(buf, 5)
    assert info.value.args[0] == b"too long for it"
    with pytest.raises(ValueError, match="negative offset"):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match="offset too large"):
        b.recv_bytes_into(buf, 11)
    a.send_bytes(b"kept")
    with pytest.raises(TypeError):
        b.recv_bytes_into(b"read-only")
    assert b.recv_bytes() == b"kept", "a refused buffer does not consume the message"


def test_bytes_and_objects_interoperate_like_the_stdlib(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    a.send_bytes(pickle.dumps({"via": "send_bytes"}))
    assert b.recv() == {"via": "send_bytes"}
    for obj in ([1, "two"], b"raw bytes", bytearray(b"ba")):
        a.send(obj)
        assert pickle.loads(b.recv_bytes()) == obj
    array = np.arange(100_000)
    thread = _in_thread(a.send, array)
    assert np.array_equal(pickle.loads(b.recv_bytes()), array)
    thread.join()
    a.send(7)
    buf = bytearray(100)
    n = b.recv_bytes_into(buf)
    assert pickle.loads(buf[:n]) == 7


def test_garbage_on_the_wire_is_a_frame_error() -> None:
    raw, other = socket.socketpair()
    conn = Connection(other.detach())
    with conn:
        raw.sendall(b"this is not a procly frame at all")
        with pytest.raises(FrameError, match="corrupt frame header"):
            conn.recv()
        with pytest.raises(FrameError):
            conn.recv()
    raw.close()


def test_oversized_declared_length_is_refused() -> None:
    raw, other = socket.socketpair()
    conn = Connection(other.detach())
    with conn:
        conn.max_message_size = 1 << 20
        raw.sendall(fr.pack_header(fr.KIND_PICKLE, 1 << 40))
        with pytest.raises(FrameError, match="max_message_size"):
            conn.recv()
        with pytest.raises(ValueError):
            conn.max_message_size = -1
    raw.close()


def test_wait_sees_read_ahead_data(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    a.send(1)
    a.send(2)
    assert wait([b], 10) == [b]
    assert b.recv() == 1  # the same recv read both frames
    assert wait([b], 0) == [b]
    assert b.poll(0)
    assert b.recv() == 2
    assert wait([b], 0) == []


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="invalid handle"):
        Connection(-1)
    a, b = socket.socketpair()
    try:
        with pytest.raises(ValueError, match="at least one"):
            Connection(a.fileno(), readable=False, writable=False)
    finally:
        a.close()
        b.close()


def test_context_manager_and_repr() -> None:
    a, b = Pipe()
    with a, b:
        assert "fd=" in repr(a)
    assert a.closed and b.closed and "closed" in repr(a)


def test_spin_seconds_can_be_tuned_and_zero_still_works(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    b.spin_seconds = 0
    with pytest.raises(ValueError):
        b.spin_seconds = -1
    thread = _in_thread(lambda: a.send("late"))
    assert b.recv() == "late"
    thread.join()


def test_signal_during_blocking_recv_is_retried(pipe: tuple[Connection, Connection]) -> None:
    a, b = pipe
    calls: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda *_: calls.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        thread = threading.Timer(0.3, a.send, args=("after the signal",))
        thread.start()
        assert b.recv() == "after the signal"
        thread.join()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert calls == [1]
