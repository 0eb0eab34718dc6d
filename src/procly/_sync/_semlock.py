"""Named POSIX semaphores and the primitives that are nothing more (layer 2).

Every primitive here waits on a named POSIX semaphore through :mod:`posix_ipc`: the
uncontended ``sem_trywait``/``sem_post`` are atomic instructions in user space (no system
call), and a blocked waiter sleeps in the kernel with the GIL released.

Lifetime of a name (``/dev/shm/sem.<name>``), which is the only thing that could leak:

* created by a ``fork`` context: unlinked at once; forked children inherit the mapping.
  Such a primitive refuses to be pickled for a spawned child, with a clear
  :class:`RuntimeError` (the standard library let the child fail with
  :class:`FileNotFoundError`).
* created by a ``spawn``/``forkserver`` context: the name must exist while a new process
  may still open it.  It is registered with the resource tracker
  (:mod:`procly._proc._tracker`) as reference counted: every process that opened it holds
  one use, every pickle in flight holds a hold, and the tracker unlinks the name when none
  is left -- also when processes were SIGKILLed.  A primitive that was never pickled and
  whose creator never forked is unlinked by its creator as soon as it is garbage.
"""

from __future__ import annotations

import os
import sys
import time
import weakref
from typing import Any

import posix_ipc

from .._os._names import new_name
from . import _arena

__all__ = ("BoundedSemaphore", "SemLock", "Semaphore", "timed_acquire")

BusyError = posix_ipc.BusyError
SignalError = posix_ipc.SignalError
SEM_VALUE_MAX: int = posix_ipc.SEMAPHORE_VALUE_MAX
_TIMEOUT_SUPPORTED: bool = posix_ipc.SEMAPHORE_TIMEOUT_SUPPORTED


def timed_acquire(sem: Any, seconds: float | None) -> bool:
    """Wait up to *seconds* (``None``: for ever) for *sem*; ``False`` on timeout or when a
    signal interrupted the wait (the caller loops; Python runs the handler meanwhile)."""
    try:
        if seconds is None:
            sem.acquire()
        elif _TIMEOUT_SUPPORTED:
            sem.acquire(seconds)
        else:  # pragma: no cover - macOS has no sem_timedwait: poll, as the stdlib does
            deadline = time.monotonic() + seconds
            delay = 0.0005
            while True:
                try:
                    sem.acquire(0)
                    return True
                except BusyError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    time.sleep(min(delay, left))
                    delay = min(delay * 2, 0.02)
        return True
    except (BusyError, SignalError):
        return False


def _unlink_now(ctx: Any) -> bool:
    """The standard library's rule: a ``fork`` context unlinks the name at once."""
    if ctx is None:  # the default context's method, read from its owner one layer down
        from .._proc._context import START_METHOD

        return START_METHOD.get() == "fork"
    getter = getattr(ctx, "get_start_method", None)
    return getter is not None and getter() == "fork"


class _NameState:
    """What the finaliser of one opened name must do (mutable: pickling changes it)."""

    __slots__ = ("generation", "name", "pid", "shared", "tracked")

    def __init__(self, name: str, tracked: bool) -> None:
        self.name = name
        self.tracked = tracked
        self.pid = os.getpid()
        self.shared = False
        self.generation = _arena.REGISTRY.generation


def _close(sem: Any, state: _NameState) -> None:
    try:
        sem.close()
    except posix_ipc.Error:  # pragma: no cover - already closed
        pass
    if not state.tracked:
        return
    from .._proc import _tracker

    private = (
        os.getpid() == state.pid
        and not state.shared
        and state.generation == _arena.REGISTRY.generation
    )
    try:
        if private:  # nobody else can have opened it: unlink now rather than via the tracker
            try:
                posix_ipc.unlink_semaphore(state.name)
            except posix_ipc.ExistentialError:
                pass
            _tracker.unregister("sem", state.name.lstrip("/"))
        else:
            _tracker.release("sem", state.name.lstrip("/"))
    except OSError:  # pragma: no cover - tracker gone at shutdown: it unlinks on EOF
        pass


class _Handle:
    """One named semaphore opened in this process, closed when garbage."""

    __slots__ = ("__weakref__", "sem", "state")

    def __init__(self, sem: Any, state: _NameState) -> None:
        self.sem = sem
        self.state = state
        weakref.finalize(self, _close, sem, state)

    @classmethod
    def create(cls, value: int, unlink_now: bool) -> _Handle:
        if not 0 <= value <= SEM_VALUE_MAX:
            raise ValueError(f"semaphore value must be in [0, {SEM_VALUE_MAX}], got {value}")
        for _ in range(100):
            name = "/" + new_name("m")
            try:
                sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode=0o600, initial_value=value)
                break
            except posix_ipc.ExistentialError:  # pragma: no cover - 40 random bits collided
                continue
        else:  # pragma: no cover
            raise FileExistsError("cannot find a free semaphore name")
        if unlink_now:
            posix_ipc.unlink_semaphore(name)
            return cls(sem, _NameState(name, tracked=False))
        try:
            from .._proc import _tracker

            _tracker.register("sem", name.lstrip("/"), pin=False)
        except BaseException:
            sem.close()
            posix_ipc.unlink_semaphore(name)
            raise
        return cls(sem, _NameState(name, tracked=True))

    def reduce_state(self, owner: object) -> tuple[str, str]:
        """Make the name survive until the receiver opened it; returns ``(name, hold)``."""
        from .._proc import _tracker

        state = self.state
        if not state.tracked:
            raise RuntimeError(
                f"{type(owner).__name__} was created by a 'fork' context, whose semaphores "
                "have no name left: it can only be inherited through fork. Create it with "
                "get_context('spawn') or get_context('forkserver') to pass it to such a child"
            )
        state.shared = True
        token = _tracker.hold("sem", state.name.lstrip("/"))
        return state.name, token

    @classmethod
    def reopen(cls, name: str, token: str) -> _Handle:
        from .._proc import _tracker

        key = name.lstrip("/")
        try:
            sem = posix_ipc.Semaphore(name)
        except posix_ipc.ExistentialError:
            raise FileNotFoundError(
                f"semaphore {name!r} no longer exists: the process that sent it was gone "
                "before this one could open it"
            ) from None
        _tracker.use("sem", key)
        _tracker.release_hold("sem", key, token)
        state = _NameState(name, tracked=True)
        state.shared = True
        return cls(sem, state)


class SemLock:
    """Base of every primitive that waits on one named semaphore.

    Not meant to be used directly (standard-library name, kept for ``isinstance``).
    Instances cross to another process only as arguments of a process being started
    (:class:`RuntimeError` otherwise, as in the standard library).
    """

    _handle: _Handle

    def __init__(self, value: int, *, ctx: Any = None) -> None:
        self._handle = _Handle.create(value, _unlink_now(ctx))
        self._setup()

    def _setup(self) -> None:
        self._sem = self._handle.sem

    # -- pickling -------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        from .._proc._spawning import assert_spawning

        assert_spawning(self)
        name, token = self._handle.reduce_state(self)
        return {"name": name, "token": token, **self._extra_state()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._handle = _Handle.reopen(state.pop("name"), state.pop("token"))
        self._set_extra_state(state)
        self._setup()

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # -- the protocol -----------------------------------------------------------------------
    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _deadline(timeout: float | None) -> float | None:
    """Monotonic deadline for *timeout* seconds (``None``: none; negative: now).

    Raises :class:`TypeError` for a timeout that is not a real number.
    """
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        try:
            timeout = float(timeout.__float__())  # type: ignore[attr-defined]
        except AttributeError:
            raise TypeError(
                f"timeout must be a number or None, not {type(timeout).__name__}"
            ) from None
    return time.monotonic() + max(float(timeout), 0.0)


class Semaphore(SemLock):
    """A counter shared by processes: :meth:`acquire` decrements, waiting while it is zero.

    Like :class:`multiprocessing.Semaphore`; releasing more than acquired is allowed.
    """

    def __init__(self, value: int = 1, *, ctx: Any = None) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        super().__init__(value, ctx=ctx)

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Decrement the counter; return ``False`` if *block* is false or *timeout*
        (seconds; negative means zero) ran out first."""
        try:
            self._sem.acquire(0)
            return True
        except BusyError:
            if not block:
                return False
        deadline = _deadline(timeout)
        while True:
            if deadline is None:
                wait = None
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return False
            if timed_acquire(self._sem, wait):
                return True

    def release(self) -> None:
        """Increment the counter, waking one waiter."""
        self._sem.release()

    def get_value(self) -> int:
        """The current counter.  Raises :class:`NotImplementedError` where the platform
        cannot tell (macOS), as the standard library does."""
        if not posix_ipc.SEMAPHORE_VALUE_SUPPORTED:  # pragma: no cover - macOS
            raise NotImplementedError("sem_getvalue is not available on this platform")
        return int(self._sem.value)

    def _value_text(self) -> str:
        try:
            return str(self.get_value())
        except Exception:  # pragma: no cover
            return "unknown"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(value={self._value_text()})>"


class BoundedSemaphore(Semaphore):
    """A :class:`Semaphore` that refuses to rise above its initial value.

    :meth:`release` raises :class:`ValueError` when the counter is already at the bound
    (like the standard library, the check and the increment are not one atomic step).
    """

    def __init__(self, value: int = 1, *, ctx: Any = None) -> None:
        super().__init__(value, ctx=ctx)
        self._maxvalue = value

    def _extra_state(self) -> dict[str, Any]:
        return {"maxvalue": self._maxvalue}

    def _set_extra_state(self, state: dict[str, Any]) -> None:
        self._maxvalue = state["maxvalue"]

    def release(self) -> None:
        """Increment the counter.  Raises :class:`ValueError` if that would exceed the bound."""
        if sys.platform != "darwin" and self._sem.value >= self._maxvalue:
            raise ValueError("semaphore or lock released too many times")
        self._sem.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}(value={self._value_text()}, maxvalue={self._maxvalue})>"
