"""Frames on the wire: header format, read-ahead, descriptors, and every way a frame goes bad."""

from __future__ import annotations

import array
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procly._errors import FrameError
from procly._serial import _framing as fr


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _reader(sock: socket.socket, **kw: Any) -> fr.FrameReader:
    return fr.FrameReader(sock.recv_into, sock.recvmsg_into, fd=sock.fileno(), **kw)


def _frame(payload: bytes, kind: int = fr.KIND_BYTES) -> bytes:
    return fr.pack_header(kind, len(payload)) + payload


def _read_payload(reader: fr.FrameReader) -> tuple[int, bytes]:
    kind, length, sizes, fds = reader.read_header()
    assert not sizes and not fds
    view = reader.take(length)
    if view is None:
        data = bytearray(length)
        reader.read_into(memoryview(data))
        return kind, bytes(data)
    return kind, bytes(view)


def test_header_is_16_bytes_with_64_bit_lengths() -> None:
    big = 5 * 2**30  # over 4 GiB
    head = fr.pack_header(fr.KIND_PICKLE, big, [big + 1, 7], nfds=3)
    assert len(head) == 16 + 2 * 8
    magic, kind, nfds, nbufs, length = fr.HEADER.unpack_from(head)
    assert (magic, kind, nfds, nbufs, length) == (fr.MAGIC, fr.KIND_PICKLE, 3, 2, big)
    assert struct.unpack_from("<2Q", head, 16) == (big + 1, 7)


def test_header_refuses_counts_the_format_cannot_carry() -> None:
    with pytest.raises(ValueError, match="file descriptors"):
        fr.pack_header(fr.KIND_PICKLE, 1, nfds=fr.MAX_FDS + 1)


def test_small_frames_are_read_ahead_in_one_recv(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(_frame(b"one") + _frame(b"two") + _frame(b"three"))
    reader = _reader(b)
    assert _read_payload(reader) == (fr.KIND_BYTES, b"one")
    assert reader.buffered() == 2 * 16 + len(b"twothree")  # the rest came with the same recv
    assert _read_payload(reader)[1] == b"two"
    assert _read_payload(reader)[1] == b"three"
    assert reader.buffered() == 0


def test_large_declared_length_over_4_gib_then_truncation_is_a_frame_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A 5 GiB frame cut short: the 64-bit length is honoured, the receive buffer is virtual
    memory only (nothing close to 5 GiB is touched), and the cut is a FrameError."""
    a, b = pair
    length = 5 * 2**30
    a.sendall(fr.pack_header(fr.KIND_BYTES, length) + b"x" * 1000)
    a.close()
    reader = _reader(b)
    kind, got, _, _ = reader.read_header()
    assert (kind, got) == (fr.KIND_BYTES, length)
    _obj, view = fr.new_bytes(length)
    with pytest.raises(FrameError, match=r"after 1000 of 5368709120 payload bytes"):
        reader.read_into(view)
    with pytest.raises(FrameError, match="earlier frame error"):
        reader.read_header()


def test_declared_length_beyond_the_bound_is_refused_before_allocation(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.sendall(fr.pack_header(fr.KIND_BYTES, 2**63))
    reader = _reader(b, max_message_size=1 << 30)
    with pytest.raises(FrameError, match="more than max_message_size"):
        reader.read_header()


def test_out_of_band_sizes_count_towards_the_bound(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(fr.pack_header(fr.KIND_PICKLE, 10, [600, 600]))
    reader = _reader(b, max_message_size=1000)
    with pytest.raises(FrameError, match="1210 bytes"):
        reader.read_header()


def test_default_bound_is_large_but_finite() -> None:
    assert 1 << 30 <= fr.DEFAULT_MAX_MESSAGE_SIZE <= 1 << 40


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # wrong magic
        bytes([fr.MAGIC, 99]) + bytes(14),  # unknown kind
        bytes([fr.MAGIC, fr.KIND_PICKLE, 0, 0]) + (2**31).to_bytes(4, "little") + bytes(8),
    ],
    ids=["magic", "kind", "buffer-count"],
)
def test_garbage_is_a_frame_error(pair: tuple[socket.socket, socket.socket], garbage: bytes) -> None:
    a, b = pair
    a.sendall(garbage)
    reader = _reader(b)
    with pytest.raises(FrameError):
        reader.read_header()
    with pytest.raises(FrameError):  # the stream cannot be resynchronised
        reader.read_header()


def test_truncated_header_is_a_frame_error_and_clean_eof_is_eof(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.sendall(_frame(b"whole") + fr.pack_header(fr.KIND_BYTES, 3)[:7])
    a.close()
    reader = _reader(b)
    assert _read_payload(reader)[1] == b"whole"
    with pytest.raises(FrameError, match="7 bytes of a 16-byte header"):
        reader.read_header()
    c, d = socket.socketpair()
    c.close()
    with pytest.raises(EOFError) as info:
        _reader(d).read_header()
    assert type(info.value) is EOFError
    d.close()


def test_frame_error_is_an_eof_error() -> None:
    assert issubclass(FrameError, EOFError)


def test_announced_descriptors_that_never_arrived(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(fr.pack_header(fr.KIND_PICKLE, 0, nfds=2))
    with pytest.raises(FrameError, match="2 file descriptors but 0 arrived"):
        _reader(b).read_header()


def test_descriptors_are_claimed_in_order_across_read_ahead(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        fr.send_parts(a.sendmsg, [fr.pack_header(fr.KIND_PICKLE, 0)], 16)  # no fds
        fr.send_parts(a.sendmsg, [fr.pack_header(fr.KIND_PICKLE, 0, nfds=1)], 16, [r1])
        fr.send_parts(a.sendmsg, [fr.pack_header(fr.KIND_PICKLE, 0, nfds=1)], 16, [r2])
        reader = _reader(b)
        got = [reader.read_header()[3] for _ in range(3)]
        assert got[0] == []
        os.write(w1, b"1")
        os.write(w2, b"2")
        assert os.read(got[1][0], 1) == b"1"
        assert os.read(got[2][0], 1) == b"2"
        for fds in got[1:]:
            os.close(fds[0])
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_unclaimed_descriptors_are_closed_with_the_reader(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    r, w = os.pipe()
    try:
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))])
        reader = _reader(b)
        reader._fill(1)
        (received,) = reader._fds
        reader.close()
        with pytest.raises(OSError):
            os.fstat(received)
    finally:
        os.close(r)
        os.close(w)


class _Trickle:
    """A fake ``sendmsg`` that moves at most *limit* bytes per call (a signal, a full buffer)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out = bytearray()
        self.calls: list[int] = []

    def __call__(self, buffers: list[Any], ancdata: Any = ()) -> int:
        self.calls.append(len(buffers))
        assert len(buffers) <= 1024, "never more than IOV_MAX parts in one call"
        room = self.limit
        for buf in buffers:
            chunk = bytes(memoryview(buf).cast("B")[:room])
            self.out += chunk
            room -= len(chunk)
            if not room:
                break
        return self.limit - room


@pytest.mark.parametrize("limit", [1, 7, 4096, 10**9])
def test_partial_sends_resume_exactly(limit: int) -> None:
    parts = [b"head", b"", bytearray(b"x" * 5000), memoryview(b"abc"), b"y" * 3]
    total = sum(len(p) for p in parts)
    fake = _Trickle(limit)
    fr.send_parts(fake, parts, total)
    assert bytes(fake.out) == b"".join(bytes(p) for p in parts)


def test_more_parts_than_iov_max_go_in_batches() -> None:
    parts = [bytes([i % 256]) for i in range(2500)]
    fake = _Trickle(10**9)
    fr.send_parts(fake, parts, len(parts))
    assert bytes(fake.out) == b"".join(parts)
    assert fake.calls == [1024, 1024, 452]


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=20),
    chunk=st.integers(min_value=1, max_value=97),
    bufsize=st.integers(min_value=16, max_value=200),
)
def test_any_chunking_and_buffer_size_decode_the_same(payloads: list[bytes], chunk: int, bufsize: int) -> None:
    """Frames split at arbitrary points, through a tiny read-ahead buffer, decode exactly."""
    stream = b"".join(_frame(p) for p in payloads)
    import threading

    a, b = socket.socketpair()

    def feed() -> None:  # from a thread: many tiny sends can exceed the socket buffer
        for i in range(0, len(stream), chunk):
            a.sendall(stream[i : i + chunk])
        a.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        reader = _reader(b, bufsize=bufsize)
        assert [_read_payload(reader)[1] for _ in payloads] == payloads
        with pytest.raises(EOFError):
            reader.read_header()
    finally:
        feeder.join()
        a.close()
        b.close()


def test_new_bytes_gives_a_writable_view_of_a_bytes_object() -> None:
    obj, view = fr.new_bytes(100_000)
    view[:5] = b"hello"
    view[-1:] = b"!"
    assert isinstance(obj, (bytes, bytearray))
    assert bytes(obj[:5]) == b"hello" and obj[-1:] == b"!"
    empty, _ = fr.new_bytes(0)
    assert empty == b""


def test_new_buffer_is_writable_and_lazily_mapped_when_large() -> None:
    small, large = fr.new_buffer(10), fr.new_buffer(4 << 20)
    assert isinstance(small, bytearray)
    assert not memoryview(large).readonly and len(large) == 4 << 20


@pytest.mark.skipif(
    os.environ.get("PROCLY_BIG_TESTS") != "1",
    reason="moves a real 4.5 GiB message (~10 GiB of memory); set PROCLY_BIG_TESTS=1 to run",
)
def test_a_real_message_over_4_gib() -> None:  # pragma: no cover - opt-in
    import threading

    from procly._proc._connection import Pipe

    data = b"\x01" * (4 * 2**30 + 512 * 2**20)
    a, b = Pipe()
    with a, b:
        sender = threading.Thread(target=a.send_bytes, args=(data,))
        sender.start()
        got = b.recv_bytes()
        sender.join()
        assert len(got) == len(data) and got[-3:] == b"\x01\x01\x01"


def test_spin_backs_off_when_it_does_not_pay_and_stops_on_a_busy_machine(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    reader = _reader(b, spin_seconds=0.001)
    monkeypatch.setattr(fr, "_cores_free", lambda: True)
    reader._spin()  # nothing comes: times out
    assert reader._spin_skip == 2
    reader._spin_skip = 0
    reader._spin()
    assert reader._spin_skip == 4, "each miss doubles the reads that skip spinning"
    a.sendall(_frame(b"ready"))
    reader._spin_skip = 0
    reader._spin()  # data is there: success resets the back-off
    assert reader._spin_skip == 0 and reader._spin_backoff == 1
    assert _read_payload(reader)[1] == b"ready"
    monkeypatch.setattr(fr, "_cores_free", lambda: False)
    reader._spin_budget = 0
    reader._spin()  # a busy machine: no spinning for the next 511 blocking reads
    assert reader._spin_skip == 511
    a.sendall(_frame(b"still works"))
    assert _read_payload(reader)[1] == b"still works"
