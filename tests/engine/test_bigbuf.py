"""Big out-of-band buffers through memfd segments (``procly._engine._bigbuf``): the channel
framing with descriptors, lending and reuse, release, fork and closed-channel retirement."""

from __future__ import annotations

import ctypes
import mmap
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from _support.bigbuf import segment_fds
from procly._engine import _bigbuf
from procly._engine._channel import FrameReader, FrameWriter, _oob_header, send_frame

np = pytest.importorskip("numpy")

pytestmark = pytest.mark.skipif(not _bigbuf.available(), reason="needs memfd_create (Linux)")

MiB = 1 << 20


def mapped(view: memoryview) -> bool:
    """Whether *view* is a buffer received through a segment (not a bytearray)."""
    return isinstance(view, memoryview) and isinstance(view.obj, ctypes.Array)


@pytest.fixture(autouse=True)
def fresh_lender() -> Iterator[None]:
    _bigbuf.LENDER.drop_spares()
    yield
    _bigbuf.LENDER.drop_spares()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield a, b
    a.close()
    b.close()


def read_all(reader: FrameReader, count: int) -> list[object]:
    frames: list[object] = []
    while len(frames) < count:
        reader.pump()
        while reader.frames:
            frames.append(reader.frames.popleft())
    return frames


def send_one(sock: socket.socket, reader: FrameReader, fill: int) -> memoryview:
    """Send a 1 MiB buffer of *fill* bytes (it goes through a segment) and receive it."""
    send_frame(sock, b"x", [memoryview(np.full(MiB, fill, dtype=np.uint8))])
    [(_, [view])] = read_all(reader, 1)  # type: ignore[misc]
    return view  # type: ignore[no-any-return]


def test_big_buffers_arrive_mapped_small_ones_inline_and_frames_stay_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.setblocking(False)
    big1 = np.arange(MiB // 8 * 3, dtype=np.float64)  # 3 MiB
    big2 = np.full(2 * MiB, 7, dtype=np.uint8)
    small = bytearray(b"s" * 1000)
    writer = FrameWriter(a)
    writer.queue(b"plain")
    writer.queue(b"first", [memoryview(big1).cast("B"), memoryview(small)])
    writer.queue(b"between")
    writer.queue(b"second", [memoryview(big2).cast("B"), memoryview(big1).cast("B")])
    reader = FrameReader(b)
    frames: list[object] = []
    while writer.pending or len(frames) < 4:
        writer.flush()
        try:
            reader.pump()
        except BlockingIOError:
            pass
        while reader.frames:
            frames.append(reader.frames.popleft())
    assert frames[0] == b"plain" and frames[2] == b"between"
    stream1, bufs1 = frames[1]  # type: ignore[misc]
    assert stream1 == b"first"
    assert mapped(bufs1[0]) and not mapped(bufs1[1])
    assert np.array_equal(np.frombuffer(bufs1[0], dtype=np.float64), big1)
    assert bytes(bufs1[1]) == bytes(small)
    stream2, bufs2 = frames[3]  # type: ignore[misc]
    assert stream2 == b"second" and all(mapped(v) for v in bufs2)
    assert np.array_equal(np.frombuffer(bufs2[0], dtype=np.uint8), big2)
    assert np.array_equal(np.frombuffer(bufs2[1], dtype=np.float64), big1)
    assert _bigbuf.LENDER.stats() == (3, 0)
    del frames, bufs1, bufs2
    assert _bigbuf.LENDER.stats() == (0, 3)  # released: every segment is a spare now


def test_a_spare_is_refilled_in_place_only_after_its_receiver_released_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    reader = FrameReader(b)
    held = send_one(a, reader, 1)
    second = send_one(a, reader, 2)
    assert bytes(held[:4]) == b"\1\1\1\1"  # not overwritten: it was still held
    assert bytes(second[:4]) == b"\2\2\2\2"
    assert _bigbuf.LENDER.stats() == (2, 0)
    del held
    assert _bigbuf.LENDER.stats() == (1, 1)
    before = segment_fds()
    third = send_one(a, reader, 3)
    assert segment_fds() == before  # the spare was reused, no new segment
    assert bytes(third[-4:]) == b"\3\3\3\3" and bytes(second[:4]) == b"\2\2\2\2"
    del second, third
    _bigbuf.LENDER.drop_spares()
    assert _bigbuf.LENDER.stats() == (0, 0)
    assert segment_fds() == 0


def test_a_segment_whose_receiver_forked_is_retired_not_reused(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    reader = FrameReader(b)
    view = send_one(a, reader, 5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: holds the mapping, then exits at once
        os._exit(0 if bytes(view[:1]) == b"\5" else 1)
    assert os.waitpid(pid, 0)[1] == 0
    del view
    assert _bigbuf.LENDER.stats() == (0, 0)  # closed, not kept as a spare
    assert segment_fds() == 0


def test_a_segment_lent_on_a_channel_that_closed_is_closed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _ = pair
    send_frame(a, b"x", [memoryview(np.zeros(MiB, dtype=np.uint8))])  # never received
    assert _bigbuf.LENDER.stats() == (1, 0)
    a.close()
    assert _bigbuf.LENDER.stats() == (0, 0)
    assert segment_fds() == 0


def test_a_record_that_does_not_fit_its_segment_is_a_frame_error() -> None:
    from procly.errors import FrameError

    fd = os.memfd_create("procly-bigbuf-test")
    os.ftruncate(fd, mmap.PAGESIZE)
    with pytest.raises(FrameError, match="does not fit"):
        _bigbuf.borrow(_bigbuf.RECORD.pack(MiB, mmap.PAGESIZE), fd)
    with pytest.raises(OSError):
        os.fstat(fd)  # closed all the same


def test_the_threshold_keeps_smaller_buffers_in_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    small = np.ones(_bigbuf.THRESHOLD - 1, dtype=np.uint8)
    sender = threading.Thread(target=send_frame, args=(a, b"x", [memoryview(small)]))
    sender.start()  # the socket holds less than the buffer: receive while it sends
    [(_, [view])] = read_all(FrameReader(b), 1)  # type: ignore[misc]
    sender.join()
    assert not mapped(view) and len(view) == small.nbytes
    assert _bigbuf.LENDER.stats() == (0, 0)


def test_descriptors_of_a_frame_cut_short_are_closed_with_its_reader(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    fd = os.memfd_create("procly-bigbuf")
    header = _oob_header(1, [_bigbuf.RECORD.size | _bigbuf.REF_FLAG])
    a.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])
    os.close(fd)
    reader = FrameReader(b)
    reader.pump()  # the header and the descriptor arrive; the stream and record never do
    assert not reader.frames and segment_fds() == 1
    del reader
    assert segment_fds() == 0


def test_decay_closes_spares_unused_for_decay_s_and_keeps_younger_ones(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    reader = FrameReader(b)
    held = send_one(a, reader, 1)
    lender = _bigbuf.LENDER
    assert not lender.decay(float("inf"))  # lent and held: nothing to close, still watched
    assert lender.stats() == (1, 0)
    del held
    assert lender.stats() == (0, 1)  # released: a spare, idle from now on
    assert not lender.decay(time.monotonic())  # too young to go
    assert lender.stats() == (0, 1)
    assert lender.decay(time.monotonic() + _bigbuf.DECAY_S)  # idle long enough: closed
    assert lender.stats() == (0, 0)
    assert segment_fds() == 0


def test_the_decay_thread_returns_idle_spares_and_ends(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_bigbuf, "DECAY_S", 0.05)
    a, b = pair
    reader = FrameReader(b)
    lender = _bigbuf.LENDER
    old = lender._decayer
    if old is not None:  # one from an earlier test, still on its longer wait
        old.join(timeout=30)
    send_frame(a, b"x", [memoryview(np.full(MiB, 1, dtype=np.uint8))])
    decayer = lender._decayer
    assert decayer is not None and decayer.daemon
    [(_, [held])] = read_all(reader, 1)  # type: ignore[misc]
    del held  # released: the thread closes the spare once it is idle, then ends
    decayer.join(timeout=30)
    assert not decayer.is_alive()
    assert lender._decayer is None
    assert lender.stats() == (0, 0)
    assert segment_fds() == 0
