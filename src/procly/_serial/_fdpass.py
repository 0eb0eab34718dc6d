"""File descriptors inside pickled objects (layer 0).

A :class:`~procly.connection.Connection`, a lock or a shared-memory segment may be backed by a
file descriptor.  Pickle cannot carry a descriptor, so such objects reduce to
``(_rebuild_fd, (index,))`` and the *transport* carries the descriptor itself:

* while a process is being spawned (spawn: ``pass_fds``; forkserver: ``SCM_RIGHTS``), the
  launcher installs an :class:`FdChannel` for the pickling of the process object;
* a :class:`~procly.connection.Connection` over a Unix socket installs one for each ``send``
  and ships the descriptors as ``SCM_RIGHTS`` ancillary data of the same message;
* under fork nothing is pickled, the child simply inherits the descriptor.

Without a channel, :func:`reduce_fd` raises a clear :class:`~procly.errors.SerializationError`
instead of sending a number that means nothing in the receiver.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

from .._errors import SerializationError

__all__ = ("FdChannel", "receiving_fds", "reduce_fd", "sending_fds")


class FdChannel:
    """The descriptors of one message, in order; an index in the pickle names one."""

    def __init__(self, fds: Sequence[int] = ()) -> None:
        self.fds: list[int] = list(fds)

    def add(self, fd: int) -> int:
        self.fds.append(fd)
        return len(self.fds) - 1


_sending: ContextVar[FdChannel | None] = ContextVar("procly_sending_fds", default=None)
_receiving: ContextVar[FdChannel | None] = ContextVar("procly_receiving_fds", default=None)


@contextlib.contextmanager
def sending_fds() -> Iterator[FdChannel]:
    """Collect the descriptors that objects pickled inside the block hand over."""
    channel = FdChannel()
    token = _sending.set(channel)
    try:
        yield channel
    finally:
        _sending.reset(token)


@contextlib.contextmanager
def receiving_fds(fds: Sequence[int]) -> Iterator[FdChannel]:
    """Make *fds* (as received, in order) available to objects unpickled inside the block."""
    channel = FdChannel(fds)
    token = _receiving.set(channel)
    try:
        yield channel
    finally:
        _receiving.reset(token)


def _rebuild_fd(index: int) -> int:
    channel = _receiving.get()
    if channel is None or index >= len(channel.fds):
        raise SerializationError("a file descriptor arrived without the transport that carries it")
    return channel.fds[index]


def reduce_fd(fd: int, owner: object) -> tuple[object, tuple[int]]:
    """Reduce *fd* so that the receiver gets its own descriptor for the same open file.

    The descriptor is duplicated now, so the sender may close its copy at once; the
    transport closes the duplicates in ``channel.fds`` once it has sent them, and the
    receiver owns what :func:`_rebuild_fd` returns.  *owner* only names the object in the
    error raised when no transport can carry descriptors.
    """
    channel = _sending.get()
    if channel is None:
        raise SerializationError(
            f"{owner!r} holds a file descriptor, which can only cross to another process "
            "as a Process argument or through a Connection over a Unix socket"
        )
    return _rebuild_fd, (channel.add(os.dup(fd)),)
