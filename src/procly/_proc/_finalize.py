"""Finalizers with exit priorities (layer 1): ``multiprocessing.util.Finalize``.

A :class:`Finalize` runs a callback once, either when the object it watches is garbage
collected or, if it has an ``exitpriority``, when the process exits.  At exit finalizers run
highest priority first and, within one priority, newest first, so a resource created later
(which may depend on an earlier one) is released first.  The exit sequence is:

1. finalizers with ``exitpriority >= 0``;
2. daemonic children are terminated, every child is joined (see
   :func:`procly._proc._process.exit_function`);
3. the remaining finalizers with a priority (negative ones).

A finalizer created in one process never runs in another: a forked child inherits the
registry but :meth:`FinalizerRegistry.clear` empties it and each entry also remembers its
pid.

The registry is the one object :data:`FINALIZERS`; ``clear()`` is its documented reset.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ("FINALIZERS", "Finalize", "FinalizerRegistry", "is_exiting", "run_finalizers")


class FinalizerRegistry:
    """Every live :class:`Finalize` of this process, keyed by ``(exitpriority, order)``."""

    def __init__(self) -> None:
        self.entries: dict[tuple[int | None, int], Finalize] = {}
        self.counter = itertools.count()
        self.exiting = False
        self.lock = threading.Lock()

    def clear(self) -> None:
        """Forget every finalizer (in a new child, and in tests)."""
        self.entries.clear()
        self.exiting = False
        self.lock = threading.Lock()


FINALIZERS = FinalizerRegistry()


class Finalize:
    """Run ``callback(*args, **kwargs)`` once: when *obj* dies or, given an
    *exitpriority*, at process exit (``multiprocessing.util.Finalize``).

    Raises :class:`TypeError` if *exitpriority* is neither ``None`` nor an :class:`int`, and
    :class:`ValueError` if both *obj* and *exitpriority* are ``None`` (it could never run).
    """

    __module__ = "procly.util"

    def __init__(
        self,
        obj: Any,
        callback: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        exitpriority: int | None = None,
    ) -> None:
        if exitpriority is not None and (
            not isinstance(exitpriority, int) or isinstance(exitpriority, bool)
        ):
            raise TypeError(
                f"Exitpriority ({exitpriority!r}) must be None or int, not {type(exitpriority)!s}"
            )
        if obj is not None:
            self._weakref: weakref.ref[Any] | None = weakref.ref(obj, self)
        elif exitpriority is None:
            raise ValueError("Without object, exitpriority cannot be None")
        else:
            self._weakref = None
        self._callback: Callable[..., Any] | None = callback
        self._args: Sequence[Any] = args
        self._kwargs: Mapping[str, Any] = kwargs or {}
        self._key: tuple[int | None, int] | None = (exitpriority, next(FINALIZERS.counter))
        self._pid = os.getpid()
        FINALIZERS.entries[self._key] = self

    def __call__(self, wr: object = None) -> Any:
        """Run the callback now (at most once); returns its result, or ``None`` if it already
        ran, was cancelled, or belongs to another process."""
        try:
            del FINALIZERS.entries[self._key]  # type: ignore[arg-type]
        except KeyError:
            return None
        if self._pid != os.getpid() or self._callback is None:
            result = None
        else:
            result = self._callback(*self._args, **self._kwargs)
        self._weakref = self._callback = None
        self._args = ()
        self._kwargs = {}
        self._key = None
        return result

    def cancel(self) -> None:
        """Make sure the callback never runs."""
        try:
            del FINALIZERS.entries[self._key]  # type: ignore[arg-type]
        except KeyError:
            pass
        else:
            self._weakref = self._callback = None
            self._args = ()
            self._kwargs = {}
            self._key = None

    def still_active(self) -> bool:
        """Whether the callback has neither run nor been cancelled."""
        return self._key in FINALIZERS.entries

    def __repr__(self) -> str:
        obj = self._weakref() if self._weakref is not None else None
        if self._key is None:
            return "<Finalize object, dead>"
        name = getattr(self._callback, "__name__", repr(self._callback))
        text = f"<{type(self).__name__} object, callback={name}"
        if obj is not None:
            text += f", obj={obj!r}"
        if self._args:
            text += f", args={self._args!r}"
        if self._kwargs:
            text += f", kwargs={self._kwargs!r}"
        if self._key[0] is not None:
            text += f", exitpriority={self._key[0]}"
        return text + ">"


def run_finalizers(minpriority: int | None = None) -> None:
    """Run finalizers with ``exitpriority >= minpriority`` (all that have a priority when
    *minpriority* is ``None``), highest priority first, newest first within a priority.

    An exception in one finalizer is printed and the others still run.
    """
    if minpriority is None:

        def wanted(key: tuple[int | None, int]) -> bool:
            return key[0] is not None

    else:
        floor = minpriority

        def wanted(key: tuple[int | None, int]) -> bool:
            return key[0] is not None and key[0] >= floor

    # Finalizers may create or cancel finalizers: iterate over a snapshot, re-checking.
    keys = sorted((k for k in list(FINALIZERS.entries) if wanted(k)), key=_order, reverse=True)
    for key in keys:
        finalizer = FINALIZERS.entries.get(key)
        if finalizer is None:
            continue
        try:
            finalizer()
        except Exception:
            import traceback

            traceback.print_exc()
    if minpriority is None:
        FINALIZERS.entries.clear()


def _order(key: tuple[int | None, int]) -> tuple[int, int]:
    return (key[0] if key[0] is not None else 0, key[1])


def is_exiting() -> bool:
    """Whether this process has started its exit sequence (``multiprocessing.util.is_exiting``)."""
    return FINALIZERS.exiting
