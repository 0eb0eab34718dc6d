"""wait() over mixed objects and Deadline against an injected clock (no sleeping)."""

from __future__ import annotations

import math
import os
import socket
import time

import pytest

from procly._os._wait import Deadline, fileno_of, wait


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_down_on_the_injected_clock() -> None:
    clock = FakeClock()
    deadline = Deadline(5.0, clock)
    assert deadline.remaining() == 5.0 and not deadline.expired()
    clock.now += 4.5
    assert deadline.remaining() == pytest.approx(0.5)
    clock.now += 1
    assert deadline.remaining() == 0.0 and deadline.expired()


def test_deadline_forever_zero_and_negative() -> None:
    clock = FakeClock()
    forever = Deadline(None, clock)
    clock.now += 1e9
    assert forever.forever and forever.remaining() is None and not forever.expired()
    assert Deadline(0, clock).expired()
    assert Deadline(-3, clock).remaining() == 0.0
    with pytest.raises(ValueError, match="NaN"):
        Deadline(math.nan, clock)


class Buffered:
    """Has nothing for the kernel to report but holds read-ahead data."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def _procly_buffered(self) -> bool:
        return True


def test_wait_over_fds_sockets_and_buffered_objects() -> None:
    r, w = os.pipe()
    a, b = socket.socketpair()
    try:
        assert wait([r, a], timeout=0) == []
        os.write(w, b"x")
        assert wait([r, a], timeout=5) == [r]
        b.close()  # hang-up is ready too
        assert wait([r, a], timeout=5) == [r, a]
        buffered = Buffered(w)
        assert wait([buffered, a], timeout=None) == [buffered]
        assert wait([r, r], timeout=5) == [r, r], "duplicates are each reported"
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()


def test_wait_timeout_is_a_bound() -> None:
    r, w = os.pipe()
    try:
        started = time.monotonic()
        assert wait([r], timeout=0.1) == []
        assert 0.05 <= time.monotonic() - started < 10
    finally:
        os.close(r)
        os.close(w)


def test_bad_objects_are_rejected_clearly() -> None:
    with pytest.raises(TypeError, match="no fileno"):
        wait([object()], timeout=0)
    with pytest.raises(ValueError, match="invalid file descriptor"):
        fileno_of(-1)

    class Weird:
        def fileno(self) -> str:
            return "3"

    with pytest.raises(TypeError, match="not an int"):
        fileno_of(Weird())
