"""Who this process is, and whether another process is still alive (layer 2).

A lock records its holder as a *token*: the pid plus, on Linux, the process start time
(``/proc/<pid>/stat`` field 22) packed as ``start_time << 22 | pid``.  Pids are below
``2**22`` on Linux, so the token fits one signed 64-bit word and a waiter can tell a dead
holder from a new process that happens to reuse its pid.

The token of the current process is kept in the one :data:`IDENTITY` object and refreshed
in every forked child before any user code runs (an internal after-fork hook).
"""

from __future__ import annotations

import os

__all__ = ("IDENTITY", "Identity", "is_alive", "pid_of")

_PID_BITS = 22
_PID_MASK = (1 << _PID_BITS) - 1


def _stat(pid: int) -> tuple[bytes, int] | None:
    """``(state, start_time)`` from ``/proc/<pid>/stat``, or ``None`` if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = data.rsplit(b")", 1)[-1].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


_HAVE_PROC = _stat(os.getpid()) is not None


def _token_of(pid: int) -> int:
    info = _stat(pid) if _HAVE_PROC else None
    start = info[1] if info is not None else 0
    return (start << _PID_BITS) | pid


class Identity:
    """The token of the current process (the module's one state object).

    :meth:`refresh` is the documented reset; it runs in each forked child.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = _token_of(self.pid)

    def refresh(self) -> None:
        self.pid = os.getpid()
        self.token = _token_of(self.pid)


IDENTITY = Identity()

try:  # run before user after-fork hooks, which may already take locks
    from .._proc._afterfork import register_internal as _register_internal

    _register_internal(IDENTITY.refresh)
except ImportError:  # pragma: no cover - the processes layer always provides it
    os.register_at_fork(after_in_child=IDENTITY.refresh)


def pid_of(token: int) -> int:
    """The pid packed in *token*."""
    return token & _PID_MASK


def is_alive(token: int) -> bool:
    """Whether the process that *token* names still runs.

    A zombie (dead, not yet reaped by its parent) counts as dead: its parent may be the
    very process blocked on the lock.  A pid reused by a newer process counts as dead too
    (the start time differs).  Without ``/proc`` (macOS) only ``kill(pid, 0)`` is asked,
    which sees neither zombies nor reuse.
    """
    pid = token & _PID_MASK
    start = token >> _PID_BITS
    if _HAVE_PROC:
        info = _stat(pid)
        if info is None:
            return False
        state, started = info
        if state in (b"Z", b"X", b"x"):
            return False
        return start == 0 or started == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
