"""Drop-in for :mod:`multiprocessing.dummy`: the procly API backed by threads.

``Process`` is a thread, the synchronization primitives and queues are those of
:mod:`threading` and :mod:`queue`, and ``Pool`` is :class:`procly.pool.ThreadPool`.
Useful to debug code written for processes, or for I/O-bound work.
"""

from __future__ import annotations

import array
import threading
import weakref
from queue import Queue as Queue
from threading import Barrier as Barrier
from threading import BoundedSemaphore as BoundedSemaphore
from threading import Condition as Condition
from threading import Event as Event
from threading import Lock as Lock
from threading import RLock as RLock
from threading import Semaphore as Semaphore
from typing import Any

from .._pool._threadpool import ThreadPool

__all__ = (
    "Array",
    "Barrier",
    "BoundedSemaphore",
    "Condition",
    "DummyProcess",
    "Event",
    "JoinableQueue",
    "Lock",
    "Manager",
    "Namespace",
    "Pipe",
    "Pool",
    "Process",
    "Queue",
    "RLock",
    "Semaphore",
    "Value",
    "active_children",
    "current_process",
    "freeze_support",
)

JoinableQueue = Queue


class DummyProcess(threading.Thread):
    """A thread with the :class:`procly.Process` interface (``exitcode``, ``start``...)."""

    __module__ = "procly.dummy"

    def __init__(
        self,
        group: None = None,
        target: Any = None,
        name: str | None = None,
        args: Any = (),
        kwargs: Any = None,
    ) -> None:
        threading.Thread.__init__(self, group, target, name, args, kwargs or {})
        self._pid = None
        self._children: weakref.WeakKeyDictionary[DummyProcess, None] = weakref.WeakKeyDictionary()
        self._start_called = False
        self._parent = current_process()

    def start(self) -> None:
        """Start the thread; :class:`AssertionError` if not created by the current one."""
        if self._parent is not current_process():
            raise RuntimeError(f"Parent is {self._parent!r} but current_process is {current_process()!r}")
        self._start_called = True
        if hasattr(self._parent, "_children"):
            self._parent._children[self] = None
        threading.Thread.start(self)

    @property
    def exitcode(self) -> int | None:
        """0 once the thread has finished, else ``None``."""
        if self._start_called and not self.is_alive():
            return 0
        return None


Process = DummyProcess
current_process = threading.current_thread
current_process()._children = weakref.WeakKeyDictionary()  # type: ignore[attr-defined]


def active_children() -> list[Any]:
    """Started, still-running children of the current thread."""
    children = current_process()._children  # type: ignore[attr-defined]
    for p in list(children):
        if not p.is_alive():
            children.pop(p, None)
    return list(children)


def freeze_support() -> None:
    """Nothing to do for threads."""


class Namespace:
    """A plain attribute bag (what a manager's ``Namespace`` gives, here unshared)."""

    __module__ = "procly.dummy"

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"Namespace({items})"


class Value:
    """A boxed value with a ``value`` attribute (no lock: threads share memory)."""

    __module__ = "procly.dummy"

    def __init__(self, typecode: Any, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self._typecode!r}, {self._value!r})>"


def Array(typecode: str, sequence: Any, lock: Any = True) -> array.array[Any]:
    """An :class:`array.array` (threads share memory)."""
    return array.array(typecode, sequence)


def Manager() -> Any:
    """This module itself, which offers what a manager would (stdlib behaviour)."""
    import sys

    return sys.modules[__name__]


def Pipe(duplex: bool = True) -> tuple[Any, Any]:
    """A pair of thread connections over queues (``send``/``recv``/``poll``/``close``)."""
    a: Queue[Any] = Queue()
    b: Queue[Any] = Queue()
    if duplex:
        return _Connection(a, b), _Connection(b, a)
    return _Connection(a, None), _Connection(None, a)


class _Connection:
    def __init__(self, inbox: Queue[Any] | None, outbox: Queue[Any] | None) -> None:
        self._inbox = inbox
        self._outbox = outbox

    def send(self, obj: Any) -> None:
        if self._outbox is None:
            raise OSError("connection is read-only")
        self._outbox.put(obj)

    def recv(self) -> Any:
        if self._inbox is None:
            raise OSError("connection is write-only")
        return self._inbox.get()

    def poll(self, timeout: float | None = 0.0) -> bool:
        if self._inbox is None:
            raise OSError("connection is write-only")
        if self._inbox.qsize() > 0:
            return True
        if timeout is not None and timeout <= 0:
            return False
        with self._inbox.not_empty:
            if timeout is not None and timeout > 0:
                self._inbox.not_empty.wait(timeout)
            else:
                while not self._inbox.qsize():
                    self._inbox.not_empty.wait()
        return self._inbox.qsize() > 0

    def close(self) -> None:
        pass

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def Pool(
    processes: int | None = None, initializer: Any = None, initargs: Any = ()
) -> ThreadPool:
    """A :class:`procly.pool.ThreadPool`."""
    return ThreadPool(processes, initializer, initargs)
