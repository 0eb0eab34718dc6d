"""Barriers shared by processes (layer 2).

The state (``STATE``, ``COUNT``) lives in one shared slot and only changes under the
barrier's :class:`~procly._sync._condition.Condition`, so every process sees one barrier.
``STATE`` is 0 while filling, 1 while the released parties drain out, -1 while resetting
and -2 once broken -- the life cycle :class:`threading.Barrier` documents.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from . import _arena
from ._condition import Condition

__all__ = ("Barrier",)

STATE = 0
COUNT = 1
_FILLING, _DRAINING, _RESETTING, _BROKEN = 0, 1, -1, -2


class Barrier:
    """A barrier for *parties* processes/threads (:class:`multiprocessing.Barrier`).

    :meth:`wait` returns an index unique among the parties of one round; it raises
    :class:`threading.BrokenBarrierError` when the barrier is or gets broken (timeout,
    :meth:`abort`, :meth:`reset` while waiting, or *action* raising -- *action* runs in
    the last party to arrive, and its exception propagates there).  If a process dies while
    holding the internal lock, the next caller raises :class:`~procly.errors.OwnerDiedError`.
    A party that dies while waiting is not noticed: use a *timeout*.
    """

    def __init__(
        self,
        parties: int,
        action: Callable[[], object] | None = None,
        timeout: float | None = None,
        *,
        ctx: Any = None,
    ) -> None:
        if not isinstance(parties, int) or isinstance(parties, bool):
            raise TypeError(f"parties must be an int, not {type(parties).__name__}")
        if parties < 1:
            raise ValueError("parties must be >= 1")
        if action is not None and not callable(action):
            raise TypeError("action must be callable or None")
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._cond = Condition(ctx=ctx)
        self._slot = _arena.REGISTRY.allocate()
        self._words = self._slot.words
        weakref.finalize(self, _arena.REGISTRY.release, self._slot)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "parties": self._parties,
            "action": self._action,
            "timeout": self._timeout,
            "cond": self._cond,
            "slot": self._slot,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._parties = state["parties"]
        self._action = state["action"]
        self._timeout = state["timeout"]
        self._cond = state["cond"]
        self._slot = state["slot"]
        self._words = self._slot.words

    def wait(self, timeout: float | None = None) -> int:
        """Wait for all parties; return this party's index (``0 .. parties-1``).

        *timeout* (default: the barrier's) elapsing breaks the barrier.  Raises
        :class:`threading.BrokenBarrierError`.
        """
        if timeout is None:
            timeout = self._timeout
        words = self._words
        with self._cond:
            self._enter()
            index = words[COUNT]
            words[COUNT] = index + 1
            try:
                if index + 1 == self._parties:
                    self._release()
                else:
                    self._wait(timeout)
                return index
            finally:
                words[COUNT] -= 1
                self._exit()

    def _enter(self) -> None:
        words = self._words
        while words[STATE] in (_DRAINING, _RESETTING):
            self._cond.wait()
        if words[STATE] < 0:
            raise threading.BrokenBarrierError
        assert words[STATE] == _FILLING

    def _release(self) -> None:
        try:
            if self._action is not None:
                self._action()
            self._words[STATE] = _DRAINING
            self._cond.notify_all()
        except BaseException:
            self._break()
            raise

    def _wait(self, timeout: float | None) -> None:
        words = self._words
        if not self._cond.wait_for(lambda: words[STATE] != _FILLING, timeout):
            self._break()
            raise threading.BrokenBarrierError
        if words[STATE] < 0:
            raise threading.BrokenBarrierError
        assert words[STATE] == _DRAINING

    def _exit(self) -> None:
        words = self._words
        if words[COUNT] == 0 and words[STATE] in (_RESETTING, _DRAINING):
            words[STATE] = _FILLING
            self._cond.notify_all()

    def _break(self) -> None:
        self._words[STATE] = _BROKEN
        self._cond.notify_all()

    def reset(self) -> None:
        """Return to the empty state; parties waiting now get
        :class:`threading.BrokenBarrierError`."""
        words = self._words
        with self._cond:
            if words[COUNT] > 0:
                if words[STATE] in (_FILLING, _BROKEN):
                    words[STATE] = _RESETTING
            else:
                words[STATE] = _FILLING
            self._cond.notify_all()

    def abort(self) -> None:
        """Break the barrier: current and future :meth:`wait` calls raise
        :class:`threading.BrokenBarrierError` until :meth:`reset`."""
        with self._cond:
            self._break()

    @property
    def parties(self) -> int:
        """The number of parties needed to pass the barrier."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of parties waiting now."""
        return int(self._words[COUNT]) if self._words[STATE] == _FILLING else 0

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return bool(self._words[STATE] == _BROKEN)

    def __repr__(self) -> str:
        if self.broken:
            return f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}: broken>"
        return (
            f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}: "
            f"waiters={self.n_waiting}/{self.parties}>"
        )
