"""Events shared by processes (layer 2): a flag word in a shared slot plus a
:class:`~procly._sync._condition.Condition` over a :class:`Lock` to sleep on."""

from __future__ import annotations

from typing import Any

from . import _arena
from ._condition import Condition
from ._lock import Lock

__all__ = ("Event",)

FLAG = 0


class Event:
    """A flag processes can wait for (:class:`multiprocessing.Event`).

    :meth:`is_set` reads one shared word without taking any lock.  If a process dies while
    holding the internal lock, the next caller raises :class:`~procly.errors.OwnerDiedError`
    once (see :class:`Lock`).
    """

    def __init__(self, *, ctx: Any = None) -> None:
        self._cond = Condition(Lock(ctx=ctx), ctx=ctx)
        self._slot = _arena.REGISTRY.allocate()
        self._words = self._slot.words
        import weakref

        weakref.finalize(self, _arena.REGISTRY.release, self._slot)

    def __getstate__(self) -> dict[str, Any]:
        return {"cond": self._cond, "slot": self._slot}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._cond = state["cond"]
        self._slot = state["slot"]
        self._words = self._slot.words

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return bool(self._words[FLAG])

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        with self._cond:
            self._words[FLAG] = 1
            self._cond.notify_all()

    def clear(self) -> None:
        """Reset the flag."""
        with self._cond:
            self._words[FLAG] = 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or *timeout* seconds passed; return the flag."""
        with self._cond:
            if not self._words[FLAG]:
                self._cond.wait(timeout)
            return bool(self._words[FLAG])

    def __repr__(self) -> str:
        state = "set" if self.is_set() else "unset"
        return f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}: {state}>"
