"""Whether a process object is being pickled for a new child (layer 1).

Some objects may cross to another process only while a child is being created, as part of
the :class:`~procly.Process` object (a lock, a shared-memory handle, the authkey): once the
child runs, there is no safe way to hand them over.  Their reducers call
:func:`assert_spawning`, which raises the standard library's :class:`RuntimeError` outside
that window.  Under the fork start method nothing is pickled at all.

The flag is thread-local: another thread pickling for a queue at the same moment must not
be let through.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

__all__ = ("assert_spawning", "is_spawning", "spawning")


class _SpawningState(threading.local):
    """Per-thread depth of :func:`spawning` blocks (the module's one state object)."""

    depth: int = 0


_STATE = _SpawningState()


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Mark the current thread as pickling a process object for a child."""
    _STATE.depth += 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def is_spawning() -> bool:
    """True while the current thread pickles a process object for a child."""
    return _STATE.depth > 0


def assert_spawning(obj: object) -> None:
    """Raise :class:`RuntimeError` unless a process object is being pickled for a child.

    The message is the standard library's, so code matching on it keeps working.
    """
    if not is_spawning():
        raise RuntimeError(
            f"{type(obj).__name__} objects should only be shared between processes"
            " through inheritance"
        )
