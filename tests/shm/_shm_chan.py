"""A tiny line channel over a socketpair that crosses to children under every start method
(its descriptor travels with :func:`procly._serial._fdpass.reduce_fd`), so shm tests do
not depend on which Connection features have landed."""

from __future__ import annotations

import os
import socket
from typing import Any

from procly._serial._fdpass import reduce_fd


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, ...]:
        return reduce_fd(self.fd, self)


class End:
    """One end: ``send(text)`` / ``recv() -> text`` (one line each)."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.file = self.sock.makefile("r")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n")

    def recv(self) -> str:
        line = self.file.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __del__(self) -> None:  # tests need not close ends explicitly
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (_Fd(self.sock.fileno()),)


def _rebuild(fd: int) -> End:
    return End(fd)


def chan() -> tuple[End, End]:
    a, b = socket.socketpair()
    return End(a.detach()), End(b.detach())


__all__ = ("End", "chan", "os")
