"""Waiting on many descriptors at once, and deadlines (layer 0).

:func:`wait` is what ``procly.connection.wait`` runs: it takes a mix of
:class:`~procly.connection.Connection` objects, sockets, raw descriptors (a
``Process.sentinel`` is an ``int``) and any object with ``fileno()``, and returns the ready
ones, as the standard library does.

An object may also implement ``_procly_buffered() -> bool``: a connection that already holds
received bytes in user space is ready even though the kernel has nothing more to report
(without this, ``wait`` would block on a message that was read ahead).

:class:`Deadline` turns a ``timeout`` into a point in time so that a loop of blocking calls
honours the total timeout; its clock is injected, so timeout logic is tested without
sleeping.
"""

from __future__ import annotations

import math
import select
import selectors
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ("Deadline", "fileno_of", "wait")

T = TypeVar("T")


class Deadline:
    """A point in time computed once from a ``timeout`` in seconds.

    ``timeout=None`` means never; a negative timeout is treated as zero (already expired),
    as :mod:`selectors` does.  *clock* is :func:`time.monotonic` unless a test injects a
    fake one.
    """

    __slots__ = ("_clock", "_end")

    def __init__(self, timeout: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        if timeout is None:
            self._end: float | None = None
        else:
            if math.isnan(timeout):
                raise ValueError("timeout must not be NaN")
            self._end = clock() + max(0.0, timeout)

    @property
    def forever(self) -> bool:
        """Whether this deadline never expires."""
        return self._end is None

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` for a deadline that never expires."""
        if self._end is None:
            return None
        return max(0.0, self._end - self._clock())

    def expired(self) -> bool:
        """Whether the deadline has passed (a zero timeout is expired at once)."""
        return self._end is not None and self._clock() >= self._end


def fileno_of(obj: Any) -> int:
    """The descriptor behind *obj*: an ``int`` itself, else ``obj.fileno()``.

    Raises :class:`TypeError` for an object that is neither, and :class:`ValueError` for a
    negative descriptor; :class:`OSError` from ``fileno()`` (a closed connection) propagates.
    """
    if isinstance(obj, int):
        fd = obj
    else:
        getter = getattr(obj, "fileno", None)
        if getter is None:
            raise TypeError(f"cannot wait on {obj!r}: not an int and has no fileno() method")
        fd = getter()
        if not isinstance(fd, int):
            raise TypeError(f"{obj!r}.fileno() returned {fd!r}, not an int")
    if fd < 0:
        raise ValueError(f"invalid file descriptor {fd} for {obj!r}")
    return fd


def _selector() -> selectors.BaseSelector:
    # poll(2) needs no kernel object per call, unlike epoll; it is what a one-shot wait wants.
    if hasattr(select, "poll"):
        return selectors.PollSelector()
    return selectors.SelectSelector()  # pragma: no cover - every POSIX system has poll


def wait(object_list: Iterable[T], timeout: float | None = None) -> list[T]:
    """Wait until at least one object of *object_list* is ready, or *timeout* seconds pass.

    Ready means readable, or end-of-file / hang-up (so a ``Process.sentinel`` is ready when
    the process ended).  Returns the ready objects in their original order; an empty list
    means the timeout expired.  ``timeout=None`` waits for ever.

    Raises :class:`TypeError` / :class:`ValueError` for an object without a usable
    descriptor and :class:`OSError` for a closed one.
    """
    objects = list(object_list)
    buffered = [obj for obj in objects if _has_buffered(obj)]
    if buffered:
        return buffered
    deadline = Deadline(timeout)
    with _selector() as selector:
        by_fd: dict[int, list[T]] = {}
        for obj in objects:
            fd = fileno_of(obj)
            if fd in by_fd:
                by_fd[fd].append(obj)
            else:
                by_fd[fd] = [obj]
                selector.register(fd, selectors.EVENT_READ)
        while True:
            # selectors retries EINTR itself but restarts with the full timeout; recompute.
            events = selector.select(deadline.remaining())
            if events:
                ready_fds = {key.fd for key, _ in events}
                return [obj for obj in objects if fileno_of(obj) in ready_fds]
            if deadline.expired():
                return []


def _has_buffered(obj: Any) -> bool:
    probe = getattr(obj, "_procly_buffered", None)
    return bool(probe()) if probe is not None else False
