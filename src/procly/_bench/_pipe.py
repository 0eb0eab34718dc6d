"""Benchmark section ``pipe``: ``Pipe`` latency and throughput, procly vs the standard library.

Each runner call forks one echo child (the fork is not timed), times the transfers, then
closes the pipe and reaps the child.  Both contenders use the same ``os.fork`` child so only
the connection differs.

* round trip of a small object: ping-pong of an ``int``; seconds per round trip.
* 64 MiB NumPy array through ``send``/``recv`` to a child, which acknowledges; MB/s.
* 64 MiB ``bytes`` through ``send_bytes``/``recv_bytes``, acknowledged; MB/s.

The peer ``raw socketpair`` does the same with bare ``socket`` calls (no framing, no
pickling, one preallocated receive buffer): the floor/ceiling the kernel allows here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ._harness import Case

__all__ = ("cases",)

_MiB = 1 << 20
_SIZE = 64 * _MiB


def _procly_pipe() -> Any:
    from procly._proc._connection import Pipe

    return Pipe()


def _stdlib_pipe() -> Any:
    import multiprocessing

    return multiprocessing.Pipe()


def _with_child(make_pipe: Callable[[], Any], child: Callable[[Any], None], parent: Callable[[Any], float]) -> float:
    """Fork a child running ``child(conn)``; return what ``parent(conn)`` measured."""
    ours, theirs = make_pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            ours.close()
            child(theirs)
        except EOFError:
            pass
        except BaseException:
            code = 1
        os._exit(code)
    theirs.close()
    try:
        return parent(ours)
    finally:
        ours.close()
        os.waitpid(pid, 0)


def _raw_pipe() -> Any:
    import socket

    return socket.socketpair()


def _recv_exact(sock: Any, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError
        got += n


def _raw_echo(sock: Any) -> None:
    view = memoryview(bytearray(8))
    while True:
        _recv_exact(sock, view)
        sock.sendall(view)


def _raw_round_trip(n: int) -> Callable[[], float]:
    def parent(sock: Any) -> float:
        view = memoryview(bytearray(8))
        for i in range(50):
            sock.sendall(i.to_bytes(8, "little"))
            _recv_exact(sock, view)
        start = time.perf_counter()
        for i in range(n):
            sock.sendall(i.to_bytes(8, "little"))
            _recv_exact(sock, view)
        return (time.perf_counter() - start) / n

    return lambda: _with_child(_raw_pipe, _raw_echo, parent)


def _raw_ack(sock: Any) -> None:
    head = memoryview(bytearray(8))
    buf = memoryview(bytearray(_SIZE))  # preallocated once: the kernel's copy is the only one
    while True:
        _recv_exact(sock, head)
        size = int.from_bytes(head, "little")
        _recv_exact(sock, buf[:size])
        sock.sendall(head)


def _raw_bytes_rate(n: int) -> Callable[[], float]:
    data = os.urandom(_MiB) * (_SIZE // _MiB)

    def parent(sock: Any) -> float:
        head = memoryview(bytearray(8))
        start = time.perf_counter()
        for _ in range(n):
            sock.sendmsg([len(data).to_bytes(8, "little"), data])
            _recv_exact(sock, head)
        return n * _SIZE / _MiB / (time.perf_counter() - start)

    return lambda: _with_child(_raw_pipe, _raw_ack, parent)


def _echo(conn: Any) -> None:
    recv, send = conn.recv, conn.send
    while True:
        send(recv())


def _round_trip(make_pipe: Callable[[], Any], n: int) -> Callable[[], float]:
    def parent(conn: Any) -> float:
        recv, send = conn.recv, conn.send
        for i in range(50):  # warm up both processes
            send(i)
            recv()
        start = time.perf_counter()
        for i in range(n):
            send(i)
            recv()
        return (time.perf_counter() - start) / n

    return lambda: _with_child(make_pipe, _echo, parent)


def _ack_objects(conn: Any) -> None:
    while True:
        obj = conn.recv()
        conn.send(len(obj))


def _ack_bytes(conn: Any) -> None:
    while True:
        data = conn.recv_bytes()
        conn.send_bytes(len(data).to_bytes(8, "little"))


def _array_rate(make_pipe: Callable[[], Any], n: int) -> Callable[[], float]:
    import numpy as np

    array = np.arange(_SIZE // 8, dtype=np.int64)

    def parent(conn: Any) -> float:
        start = time.perf_counter()
        for _ in range(n):
            conn.send(array)
            if conn.recv() != len(array):
                raise RuntimeError("child got a wrong array")
        return n * _SIZE / _MiB / (time.perf_counter() - start)

    return lambda: _with_child(make_pipe, _ack_objects, parent)


def _bytes_rate(make_pipe: Callable[[], Any], n: int) -> Callable[[], float]:
    data = os.urandom(_MiB) * (_SIZE // _MiB)

    def parent(conn: Any) -> float:
        start = time.perf_counter()
        for _ in range(n):
            conn.send_bytes(data)
            if int.from_bytes(conn.recv_bytes(), "little") != len(data):
                raise RuntimeError("child got wrong bytes")
        return n * _SIZE / _MiB / (time.perf_counter() - start)

    return lambda: _with_child(make_pipe, _ack_bytes, parent)


def cases(quick: bool) -> list[Case]:
    """The ``pipe`` section: latency of a small round trip and 64 MiB throughputs."""
    trips = 1000 if quick else 5000
    big = 1 if quick else 2
    result = [
        Case(
            "Pipe round trip, small int (fork child)",
            "time",
            "s",
            0.8,
            {
                "procly": _round_trip(_procly_pipe, trips),
                "stdlib": _round_trip(_stdlib_pipe, trips),
                "raw socketpair": _raw_round_trip(trips),
            },
        ),
    ]
    try:
        import numpy  # noqa: F401
    except ImportError:  # pragma: no cover - numpy is optional
        pass
    else:
        result.append(
            Case(
                "Pipe send/recv 64 MiB NumPy array",
                "rate",
                "MB/s",
                3.0,
                {"procly": _array_rate(_procly_pipe, big), "stdlib": _array_rate(_stdlib_pipe, big)},
            )
        )
    result.append(
        Case(
            "Pipe send_bytes/recv_bytes 64 MiB",
            "rate",
            "MB/s",
            1.3,
            {
                "procly": _bytes_rate(_procly_pipe, big),
                "stdlib": _bytes_rate(_stdlib_pipe, big),
                "raw socketpair": _raw_bytes_rate(big),
            },
        )
    )
    return result
