"""After-fork hooks (layer 1): what must be reset in a child created by :func:`os.fork`.

A forked child inherits every lock, thread-bound state and descriptor of its parent, but
only the thread that forked.  A lock held by another parent thread at fork time stays
locked forever in the child; a connection shared with the parent would interleave bytes.
Higher layers therefore register a hook here (the sync layer re-creates its locks, the
connection layer drops inherited state) and this layer runs them in every forked child,
whoever forked it: procly's fork launcher, the forkserver or a bare :func:`os.fork`.

The registry is the one object :data:`HOOKS`; :meth:`AfterForkRegistry.reset` empties it
(for tests).  Hooks live in a :class:`weakref.WeakValueDictionary` keyed by registration
order, as ``multiprocessing.util.register_after_fork`` does, so registering an object does
not keep it alive.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ("HOOKS", "AfterForkRegistry", "register_after_fork", "register_internal")


class _Ref:
    """A strong holder for hooks that are plain functions (no object to watch)."""

    __slots__ = ("__weakref__", "func")

    def __init__(self, func: Callable[[], None]) -> None:
        self.func = func


class AfterForkRegistry:
    """Hooks run in a forked child, in registration order, before any user code.

    *Internal* hooks (procly's own: lifeline, process table, forkserver client) always run
    first so that user hooks already see a consistent process state.
    """

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._internal: list[Callable[[], None]] = []
        self._objects: weakref.WeakValueDictionary[tuple[int, int, Callable[[Any], None]], Any] = (
            weakref.WeakValueDictionary()
        )
        self._keep: dict[int, _Ref] = {}

    def register_internal(self, func: Callable[[], None]) -> None:
        """Register a procly hook; it runs in every forked child for the life of the process."""
        self._internal.append(func)

    def register(self, obj: Any, func: Callable[[Any], None]) -> None:
        """Call ``func(obj)`` in each forked child for as long as *obj* is alive.

        Raises :class:`TypeError` if *obj* cannot be weakly referenced.
        """
        with self._lock:
            self._objects[(next(self._counter), id(obj), func)] = obj

    def run(self) -> None:
        """Run every hook; an exception in a user hook is reported, never propagated
        (the child must still run its target)."""
        # The lock may have been held by another parent thread at fork time: replace it.
        self._lock = threading.Lock()
        for func in self._internal:
            func()
        items = sorted(self._objects.items(), key=lambda kv: kv[0][0])
        for (_index, _ident, hook), obj in items:
            try:
                hook(obj)
            except Exception as exc:  # pragma: no cover - reported, never fatal
                import sys

                print(f"procly: after-fork hook {hook!r} failed: {exc!r}", file=sys.stderr)

    def reset(self) -> None:
        """Forget every user hook (tests only; internal hooks stay)."""
        with self._lock:
            self._objects.clear()


HOOKS = AfterForkRegistry()
os.register_at_fork(after_in_child=HOOKS.run)


def register_after_fork(obj: Any, func: Callable[[Any], None]) -> None:
    """Public spelling (``multiprocessing.util.register_after_fork``): see
    :meth:`AfterForkRegistry.register`."""
    HOOKS.register(obj, func)


def register_internal(func: Callable[[], None]) -> None:
    """See :meth:`AfterForkRegistry.register_internal`."""
    HOOKS.register_internal(func)
