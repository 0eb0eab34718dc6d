"""Unit tests of the engine's pure parts: wire types, exception transport, options,
chunking, framing, and the supervisor's timeout/crash rules (fake launcher, fake clock)."""

from __future__ import annotations

import itertools
import pickle
import socket
import threading
from typing import Any

import pytest

from procly._engine._channel import ChannelEnd, FrameReader, FrameWriter, channel_pair, send_frame
from procly._engine._chunking import ChunkSizer, default_map_chunksize
from procly._engine._messages import (
    MODE_MAP,
    InitFailed,
    ResultItem,
    Retiring,
    Shutdown,
    TaskBatch,
)
from procly._engine._options import PoolOptions, check_timeout
from procly._engine._remote_tb import RemoteError, capture, unpicklable_result
from procly._engine._supervisor import Supervisor, describe_exit
from procly._engine._tasks import Task
from procly._engine._worker import WorkerSetup
from procly.errors import FrameError, RemoteTraceback, SerializationError

# -- messages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [
        TaskBatch((b"f",), (1, 2), (0, 0), bytes([MODE_MAP, 0]), (b"x", b"y")),
        Shutdown(),
        ResultItem(3, True, [1, 2], 0.5),
        InitFailed(RemoteError(ValueError("boom"), "tb")),
        Retiring(7),
    ],
)
def test_messages_roundtrip(msg: object) -> None:
    back = pickle.loads(pickle.dumps(msg, pickle.HIGHEST_PROTOCOL))
    assert type(back) is type(msg)
    if not isinstance(msg, InitFailed):
        assert back == msg


def test_messages_are_frozen() -> None:
    item = Retiring(1)
    with pytest.raises(AttributeError):
        item.tasks_done = 2  # type: ignore[misc]


# -- remote tracebacks -------------------------------------------------------------------


class BadInit(Exception):
    """An exception that pickles but cannot be rebuilt (a classic user bug)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(a)


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_capture_rebuilds_same_type_with_cause() -> None:
    err = capture(_raise(KeyError("k")))
    back = pickle.loads(pickle.dumps(err)).rebuild()
    assert type(back) is KeyError
    assert isinstance(back.__cause__, RemoteTraceback)
    assert "_raise" in str(back.__cause__)


def test_capture_unrebuildable_exception_becomes_serialization_error() -> None:
    err = capture(_raise(BadInit(1, 2)))
    back = err.rebuild()
    assert isinstance(back, SerializationError)
    assert "BadInit" in str(back)


def test_capture_unpicklable_exception() -> None:
    exc = ValueError(threading.Lock())
    back = capture(_raise(exc)).rebuild()
    assert isinstance(back, SerializationError)
    assert "ValueError" in str(back)


def test_unpicklable_result_names_the_type() -> None:
    back = unpicklable_result(threading.Lock(), TypeError("nope")).rebuild()
    assert isinstance(back, SerializationError)
    assert "lock" in str(back)


# -- options -----------------------------------------------------------------------------


def test_options_defaults_and_errors() -> None:
    opts = PoolOptions.build(processes=None, default_processes=3)
    assert opts.processes == 3
    with pytest.raises(ValueError, match="at least 1"):
        PoolOptions.build(processes=0, default_processes=1)
    with pytest.raises(ValueError, match="max_workers"):
        PoolOptions.build(processes=-1, default_processes=1, processes_name="max_workers")
    with pytest.raises(TypeError):
        PoolOptions.build(processes="2", default_processes=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="initializer"):
        PoolOptions.build(processes=1, default_processes=1, initializer=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maxtasksperchild"):
        PoolOptions.build(processes=1, default_processes=1, max_tasks_per_child=0)
    with pytest.raises(ValueError, match="task_timeout"):
        PoolOptions.build(processes=1, default_processes=1, task_timeout=-1)


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_check_timeout_rejects(bad: float) -> None:
    with pytest.raises(ValueError):
        check_timeout(bad)


def test_check_timeout_type() -> None:
    with pytest.raises(TypeError):
        check_timeout("1")  # type: ignore[arg-type]
    assert check_timeout(None) is None
    assert check_timeout(2) == 2.0


# -- chunking ----------------------------------------------------------------------------


def test_default_map_chunksize_matches_stdlib_rule() -> None:
    assert default_map_chunksize(100_000, 2) == 12_500
    assert default_map_chunksize(9, 2) == 2
    assert default_map_chunksize(0, 2) == 1


def test_chunk_sizer_ramps_for_cheap_items_and_stays_small_for_slow() -> None:
    cheap = ChunkSizer(target_s=0.01, max_size=10_000)
    assert cheap.next_size() == 1
    sizes = []
    for _ in range(20):
        size = cheap.next_size()
        sizes.append(size)
        cheap.observe(size, size * 1e-6)
    assert sizes[0] == 1
    assert all(b <= 2 * a for a, b in itertools.pairwise(sizes))  # at most doubling
    assert sizes[-1] == 10_000
    slow = ChunkSizer(target_s=0.01)
    slow.observe(1, 0.5)
    assert slow.next_size() == 1
    with pytest.raises(ValueError):
        ChunkSizer(target_s=0)


# -- framing -----------------------------------------------------------------------------


def test_frames_small_and_big_roundtrip() -> None:
    parent, end = channel_pair()
    child = end.socket()
    try:
        big = bytes(range(256)) * 8192  # 2 MiB: received into its own buffer
        writer = FrameWriter(parent)
        for payload in (b"a", b"", big, b"tail"):
            writer.queue(payload)
        received: list[bytes] = []
        reader = FrameReader(child)

        def read() -> None:
            for _ in range(4):
                frame = reader.read_frame()
                assert frame is not None
                received.append(bytes(frame))

        t = threading.Thread(target=read)
        t.start()
        while not writer.flush():
            pass
        t.join(30)
        assert received == [b"a", b"", big, b"tail"]
        send_frame(child, b"back")
        parent.setblocking(True)
        back = FrameReader(parent)
        assert back.read_frame() == b"back"
        child.close()
        assert back.read_frame() is None  # end of file
    finally:
        parent.close()
        child.close()


def test_frame_with_absurd_length_is_rejected() -> None:
    a, b = socket.socketpair()
    try:
        a.sendall((1 << 62).to_bytes(8, "little") + b"xx")
        with pytest.raises(FrameError):
            FrameReader(b).read_frame()
    finally:
        a.close()
        b.close()


def test_channel_end_needs_a_transport() -> None:
    parent, end = channel_pair()
    try:
        with pytest.raises(SerializationError, match="file descriptor"):
            pickle.dumps(end)
    finally:
        parent.close()
        socket.socket(fileno=end.fd).close()


# -- supervisor (fake launcher, fake clock) ----------------------------------------------


class FakeProc:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sentinel = -1
        self.exitcode: int | None = None
        self.killed = False

    def kill(self) -> None:
        self.killed = True
        self.exitcode = -9

    def join(self, timeout: float | None = None) -> None:
        pass


class FakeLauncher:
    def __init__(self) -> None:
        self.launched: list[tuple[ChannelEnd, WorkerSetup]] = []

    def launch(self, end: ChannelEnd, setup: WorkerSetup) -> FakeProc:
        self.launched.append((end, setup))
        return FakeProc(1000 + len(self.launched))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class NullSink:
    def task_started(self, task: Task) -> bool:
        return True

    def task_done(self, task: Task, ok: bool, value: Any) -> None:
        pass


def _task(timeout: float | None = None) -> Task:
    return Task(abs, (1,), None, NullSink(), timeout=timeout)


@pytest.fixture
def sup() -> Any:
    clock = FakeClock()
    launcher = FakeLauncher()
    s = Supervisor(launcher, lambda fds: WorkerSetup(None, (), None, close_fds=fds), None, clock, True)
    s.clock = clock  # type: ignore[attr-defined]
    s.launcher = launcher  # type: ignore[attr-defined]
    spawned: list[Any] = []
    real_spawn = s.spawn

    def spawn() -> Any:
        slot = real_spawn()
        spawned.append(slot)
        return slot

    s.spawn = spawn  # type: ignore[method-assign]
    yield s
    for slot in spawned:
        slot.sock.close()


def test_timeout_clock_starts_when_task_becomes_head(sup: Any) -> None:
    slot = sup.spawn()
    first, second = _task(timeout=5), _task(timeout=1)
    assert sup.assign(slot, [first, second]) is first
    assert sup.next_deadline() == 105.0
    sup.clock.now = 103.0  # second has been queued 3 s: not counted
    assert sup.overdue() == []
    finished, head = sup.complete(slot)
    assert finished is first and head is second
    assert sup.next_deadline() == 104.0
    sup.clock.now = 104.5
    assert sup.overdue() == [(slot, second)]
    assert sup.overdue() == []


def test_completed_task_deadline_is_stale(sup: Any) -> None:
    slot = sup.spawn()
    task = _task(timeout=1)
    sup.assign(slot, [task])
    sup.complete(slot)
    sup.clock.now = 200.0
    assert sup.overdue() == []
    assert sup.next_deadline() is None
    assert sup.wait_timeout() is None


def test_lose_blames_only_the_head(sup: Any) -> None:
    slot = sup.spawn()
    tasks = [_task(), _task(), _task()]
    sup.assign(slot, tasks)
    sup.complete(slot)
    culprit, orphans = sup.lose(slot)
    assert culprit is tasks[1]
    assert orphans == [tasks[2]]
    assert slot not in sup.slots and slot.dead


def test_lost_worker_deadline_is_dropped(sup: Any) -> None:
    slot = sup.spawn()
    sup.assign(slot, [_task(timeout=1)])
    sup.lose(slot)
    sup.clock.now = 1e9
    assert sup.overdue() == []


def test_forked_workers_close_siblings_channels(sup: Any) -> None:
    first = sup.spawn()
    sup.spawn()
    setups = [setup for _, setup in sup.launcher.launched]
    assert first.sock.fileno() in [fd for fd, _ in setups[1].close_fds]


def test_complete_without_task_raises(sup: Any) -> None:
    slot = sup.spawn()
    with pytest.raises(LookupError):
        sup.complete(slot)


def test_describe_exit() -> None:
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(None) == "unknown exit status"


def test_out_of_band_frames_roundtrip_uncopied_into_own_buffers() -> None:
    parent, end = channel_pair()
    child = end.socket()
    try:
        big = memoryview(bytes(range(256)) * 4096)  # 1 MiB
        small = memoryview(b"x" * 70_000)
        writer = FrameWriter(parent)
        writer.queue(b"stream-1", [big, small])
        writer.queue(b"plain")
        writer.queue(b"stream-2", [memoryview(b""), small])
        received: list[Any] = []
        reader = FrameReader(child)

        def read() -> None:
            for _ in range(3):
                received.append(reader.read_frame())

        t = threading.Thread(target=read)
        t.start()
        while not writer.flush():
            pass
        t.join(30)
        first, plain, third = received
        assert bytes(first[0]) == b"stream-1"
        assert [bytes(b) for b in first[1]] == [bytes(big), bytes(small)]
        # writable buffers of the receiver's own (the 1 MiB one in a shared segment where
        # the platform has them, see test_bigbuf.py), never views of the sender's memory
        assert all(not memoryview(b).readonly for b in first[1])
        assert isinstance(first[1][1], bytearray)
        assert bytes(plain) == b"plain"
        assert [bytes(b) for b in third[1]] == [b"", bytes(small)]
        send_frame(child, b"back", [small])
        parent.setblocking(True)
        frame = FrameReader(parent).read_frame()
        assert isinstance(frame, tuple) and bytes(frame[1][0]) == bytes(small)
    finally:
        parent.close()
        child.close()


class _ChoppySocket:
    """Delivers a byte string in the given piece sizes (exercises every split point)."""

    def __init__(self, data: bytes, pieces: list[int]) -> None:
        self._data = memoryview(data)
        self._pieces = pieces
        self._pos = 0
        self._i = 0

    def _next(self, limit: int) -> int:
        size = self._pieces[self._i % len(self._pieces)] if self._pieces else limit
        self._i += 1
        return max(1, min(size, limit, len(self._data) - self._pos))

    def recv(self, limit: int) -> bytes:
        if self._pos >= len(self._data):
            return b""
        n = self._next(limit)
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def recv_into(self, view: memoryview) -> int:
        if self._pos >= len(self._data):
            return 0
        n = self._next(len(view))
        view[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    # the reader receives with recvmsg (descriptors of shared segments come as ancillary data)
    def recvmsg(self, limit: int, _ancsize: int = 0) -> tuple[bytes, list[Any], int, None]:
        return self.recv(limit), [], 0, None

    def recvmsg_into(self, views: list[memoryview], _ancsize: int = 0) -> tuple[int, list[Any], int, None]:
        return self.recv_into(views[0]), [], 0, None


class _Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendmsg(self, parts: list[memoryview]) -> int:
        self.parts.extend(bytes(p) for p in parts)
        return sum(len(p) for p in parts)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_frames = st.lists(
    st.tuples(
        st.binary(max_size=300),
        st.one_of(st.none(), st.lists(st.binary(max_size=200), max_size=3)),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(frames=_frames, pieces=st.lists(st.integers(1, 64), max_size=5))
def test_frame_reader_reassembles_any_split(
    frames: list[tuple[bytes, list[bytes] | None]], pieces: list[int]
) -> None:
    sink = _Collect()
    writer = FrameWriter(sink)  # type: ignore[arg-type]
    for stream, bufs in frames:
        writer.queue(stream, [memoryview(b) for b in bufs] if bufs else None)
    assert writer.flush()
    reader = FrameReader(_ChoppySocket(b"".join(sink.parts), pieces))  # type: ignore[arg-type]
    for stream, bufs in frames:
        frame = reader.read_frame()
        assert frame is not None
        if bufs:
            assert isinstance(frame, tuple)
            assert bytes(frame[0]) == stream
            assert [bytes(b) for b in frame[1]] == bufs
        else:
            assert bytes(frame) == stream  # type: ignore[arg-type]
    assert reader.read_frame() is None


def test_spawn_while_a_dead_workers_socket_is_closed(sup: Any) -> None:
    # A worker's end of file can be seen before its sentinel: its socket is closed while
    # its slot still exists, and a replacement started meanwhile must not trip on it.
    first = sup.spawn()
    first.sock.close()
    second = sup.spawn()
    setups = [setup for _, setup in sup.launcher.launched]
    assert second in sup.slots
    assert all(fd >= 0 for fd, _ in setups[1].close_fds)
