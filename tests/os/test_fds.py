"""Descriptor helpers: exact reads, SCM_RIGHTS round trip, pidfd, signal names."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from procly._os import _fds, _signals


def test_read_exact_and_all() -> None:
    r, w = os.pipe()
    try:
        _fds.write_all(w, b"abcdef")
        assert _fds.read_exact(r, 4) == b"abcd"
        os.close(w)
        w = -1
        with pytest.raises(EOFError, match="2 of 3"):
            _fds.read_exact(r, 3)
    finally:
        _fds.close_quietly([r, w])


def test_read_all() -> None:
    r, w = os.pipe()
    os.write(w, b"hello")
    os.close(w)
    assert _fds.read_all(r) == b"hello"
    os.close(r)


def test_send_recv_fds_round_trip() -> None:
    a, b = socket.socketpair()
    r, w = os.pipe()
    try:
        _fds.send_with_fds(a, b"header12", [w])
        data, fds = _fds.recv_with_fds(b, 8, 4)
        assert data == b"header12" and len(fds) == 1
        os.write(fds[0], b"via copy")
        os.close(fds[0])
        assert os.read(r, 20) == b"via copy"
        a.close()
        with pytest.raises(EOFError):
            _fds.recv_with_fds(b, 8, 4)
    finally:
        _fds.close_quietly([r, w])
        a.close()
        b.close()


def test_close_quietly_ignores_closed() -> None:
    r, w = os.pipe()
    _fds.close_quietly([r, w, r, w])


def test_pidfd_or_none() -> None:
    fd = _fds.pidfd_open(os.getpid())
    if fd is not None:
        os.close(fd)


def test_signal_names() -> None:
    assert _signals.exitcode_name(-signal.SIGKILL) == "SIGKILL"
    assert _signals.exitcode_name(3) == "EXIT(3)"
    assert _signals.exitcode_name(None) == "running"
    assert _signals.signal_name(999) == "signal 999"
    assert _signals.send_signal(os.getpid(), 0) is True
