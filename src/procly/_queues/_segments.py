"""The big-item tables in a queue's header page (layer 2): who holds which segment.

Big items travel in segments of their own (see :mod:`._external`).  Two small tables in
the queue header keep those segments from leaking and let their memory be reused:

* **pending** (pid, name): a segment some process is filling (a producer, before it
  publishes the descriptor) or holding (a consumer, while the received object still maps
  it).  When that pid is dead, the name is unlinked by whoever notices (lock recovery, the
  next big put) -- so a SIGKILL at any moment leaks nothing.
* **spare** (capacity, "name token"): segments whose received objects were garbage-collected and
  that a producer may refill.  Fresh tmpfs pages cost more than copying into them (the
  kernel zeroes each one), so reuse roughly halves the cost of a big put.  At most
  :data:`SPARE_SLOTS` segments and :data:`MAX_SPARE_BYTES` are kept; the rest are unlinked.

A segment is recycled only by the process that received it and only if that process has
not forked since (a forked child could still map it): see :func:`fork_generation`.

Every method expects the queue's lock to be held.
"""

from __future__ import annotations

import os
import struct

from . import _external

__all__ = ("MAX_SPARE_BYTES", "SPARE_SLOTS", "SegmentTable", "fork_generation")

_ENTRY = 48  # u64 (pid or capacity) + 40 bytes of NUL-padded name
_NAME = _ENTRY - 8
PENDING_OFF, PENDING_SLOTS = 1024, 48
SPARE_OFF, SPARE_SLOTS = PENDING_OFF + PENDING_SLOTS * _ENTRY, 4
MAX_SPARE_BYTES = 512 << 20
_U64 = struct.Struct("<Q")


class _ForkCounter:
    """Counts this process's forks (the module's one state object; never reset)."""

    def __init__(self) -> None:
        self.forks = 0

    def before_fork(self) -> None:
        self.forks += 1


_FORKS = _ForkCounter()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_FORKS.before_fork)


def fork_generation() -> int:
    """How many times this process has forked: a segment lent at generation g may be
    recycled only while the generation is still g."""
    return _FORKS.forks


def _pid_dead(pid: int) -> bool:
    """Whether *pid* has exited (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class SegmentTable:
    """The pending and spare tables inside one mapped queue header (lock held)."""

    __slots__ = ("_mm",)

    def __init__(self, mm: memoryview) -> None:
        self._mm = mm

    def _name(self, off: int) -> str:
        return bytes(self._mm[off + 8 : off + _ENTRY]).rstrip(b"\0").decode("ascii")

    def _set(self, off: int, word: int, name: str) -> None:
        self._mm[off + 8 : off + _ENTRY] = name.encode("ascii")[: _NAME - 1].ljust(_NAME, b"\0")
        _U64.pack_into(self._mm, off, word)

    # -- pending -----------------------------------------------------------------------------

    def add_pending(self, name: str) -> int:
        """Record that this process fills or holds segment *name*; the slot, or -1 if full."""
        for slot in range(PENDING_SLOTS):
            off = PENDING_OFF + slot * _ENTRY
            if _U64.unpack_from(self._mm, off)[0] == 0:
                self._set(off, os.getpid(), name)
                return slot
        return -1

    def clear_pending(self, slot: int, name: str | None = None) -> bool:
        """Forget *slot* (only if it still names *name*, when given); True if cleared."""
        if slot < 0:
            return False
        off = PENDING_OFF + slot * _ENTRY
        if name is not None and (
            _U64.unpack_from(self._mm, off)[0] != os.getpid() or self._name(off) != name
        ):
            return False  # reaped meanwhile, or the slot was reused
        _U64.pack_into(self._mm, off, 0)
        return True

    def reap_dead(self) -> None:
        """Unlink the segments of dead holders."""
        for slot in range(PENDING_SLOTS):
            off = PENDING_OFF + slot * _ENTRY
            pid = _U64.unpack_from(self._mm, off)[0]
            if pid and _pid_dead(pid):
                _external.forget(self._name(off))
                _U64.pack_into(self._mm, off, 0)

    # -- spare ---------------------------------------------------------------------------------

    def take_spare(self, need: int) -> tuple[str, int, str] | None:
        """Remove and return the smallest spare ``(name, capacity, token)`` that holds
        *need* bytes without wasting more than 3/4 of it, or None.  *token* is the tracker
        hold that keeps the spare alive; it now passes to the caller."""
        best, best_cap = -1, 0
        for slot in range(SPARE_SLOTS):
            cap = _U64.unpack_from(self._mm, SPARE_OFF + slot * _ENTRY)[0]
            if cap and need <= cap <= 4 * need and (best < 0 or cap < best_cap):
                best, best_cap = slot, cap
        if best < 0:
            return None
        off = SPARE_OFF + best * _ENTRY
        name, _, token = self._name(off).partition(" ")
        _U64.pack_into(self._mm, off, 0)
        return name, best_cap, token

    def put_spare(self, name: str, capacity: int, token: str) -> bool:
        """Keep segment *name* for reuse, kept alive by the tracker hold *token*; False (the
        caller unlinks it) if the table is full or the name and token do not fit."""
        entry = f"{name} {token}"
        if len(entry) >= _NAME:
            return False
        free, total = -1, capacity
        for slot in range(SPARE_SLOTS):
            cap = _U64.unpack_from(self._mm, SPARE_OFF + slot * _ENTRY)[0]
            total += cap
            if cap == 0 and free < 0:
                free = slot
        if free < 0 or total > MAX_SPARE_BYTES:
            return False
        self._set(SPARE_OFF + free * _ENTRY, capacity, entry)
        return True
