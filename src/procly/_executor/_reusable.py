"""``get_reusable_executor()``: one executor kept warm across calls (loky's idea).

Starting workers costs milliseconds (fork) to a tenth of a second (spawn) each; code that
runs many short parallel sections can share one executor instead.  The executor is kept
by :data:`_HOLDER` (the module's one state object, ``reset()`` for tests) and replaced when
the requested settings change or it was shut down or broke.
"""

from __future__ import annotations

import threading
from typing import Any

from ._executor import ProcessPoolExecutor

__all__ = ("get_reusable_executor",)


class _Holder:
    """Owns the shared executor and the settings it was made with."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.executor: ProcessPoolExecutor | None = None
        self.key: tuple[Any, ...] | None = None

    def reset(self) -> None:
        """Shut the shared executor down and forget it (tests, interpreter exit)."""
        with self.lock:
            executor, self.executor, self.key = self.executor, None, None
        if executor is not None:
            executor.shutdown(wait=True)


_HOLDER = _Holder()


def get_reusable_executor(
    max_workers: int | None = None,
    mp_context: Any = None,
    initializer: Any = None,
    initargs: tuple[Any, ...] = (),
    **extras: Any,
) -> ProcessPoolExecutor:
    """The shared :class:`ProcessPoolExecutor`, created on first use.

    The same object is returned while the arguments stay the same and it is usable; new
    arguments (a different ``max_workers``, say) shut the old one down once its work is
    done and start a new one.  Do not ``shutdown()`` it yourself unless you are done with
    it (a later call then makes a fresh one).  Raises what :class:`ProcessPoolExecutor`
    raises for bad arguments.
    """
    key = (max_workers, id(mp_context), initializer, tuple(initargs), tuple(sorted(extras.items())))
    with _HOLDER.lock:
        current = _HOLDER.executor
        usable = (
            current is not None
            and not current._shutdown
            and current._engine is not None
            and current._engine.running
            and current._engine.broken is None
        )
        if usable and _HOLDER.key == key:
            assert current is not None
            return current
        fresh = ProcessPoolExecutor(max_workers, mp_context, initializer, initargs, **extras)
        _HOLDER.executor, _HOLDER.key = fresh, key
    if current is not None:
        current.shutdown(wait=False)
    return fresh
