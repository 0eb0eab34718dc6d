"""The C helpers the ring's hot paths lock with (``procly._os._native.mutex_trylock`` /
``mutex_unlock``): same results as pthread through ctypes, and bad input is refused."""

from __future__ import annotations

import errno

import pytest

import procly
from procly._queues import _ringbase

_native = pytest.importorskip("procly._os._native")


def test_trylock_unlock_on_a_queue_mutex() -> None:
    q = procly.Queue()
    ring = q._ring
    addr = ring._mfast
    assert isinstance(addr, int)  # the C path is the one in use
    assert _native.mutex_trylock(addr) == 0
    assert _native.mutex_trylock(addr) == errno.EBUSY  # not recursive: still held
    assert _native.mutex_unlock(addr) == 0
    q.put("after")  # the queue still works: the mutex was left free
    assert q.get(timeout=10) == "after"
    q.close()


def test_bad_addresses_are_refused() -> None:
    with pytest.raises(ValueError):
        _native.mutex_trylock(0)
    with pytest.raises(ValueError):
        _native.mutex_unlock(0)
    with pytest.raises(TypeError):
        _native.mutex_trylock("not an address")
    with pytest.raises(TypeError):
        _native.mutex_unlock(None)


def test_ring_uses_the_c_helpers() -> None:
    assert _ringbase._FAST_INT
    assert _ringbase._trylock_c is _native.mutex_trylock
