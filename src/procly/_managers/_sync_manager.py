"""SyncManager: the manager behind ``procly.Manager()`` (layer 3).

Its shared objects are ordinary *threading* and :mod:`queue` objects living in the server
process (as in the standard library): a managed ``Lock`` is a :class:`threading.Lock` there,
acquired by the server thread that serves the calling client thread.  They are slower than
procly's process-shared primitives but work across machines and can be nested in managed
containers.
"""

from __future__ import annotations

import array
import queue
import threading
from typing import Any

from .._errors import ProcessError
from .._proc._context import DEFAULT_CONTEXT
from ._base import BaseManager
from ._proxies import (
    AcquirerProxy,
    ArrayProxy,
    BarrierProxy,
    ConditionProxy,
    DictProxy,
    EventProxy,
    IteratorProxy,
    ListProxy,
    NamespaceProxy,
    PoolProxy,
    ValueProxy,
)
from ._proxy import CLIENT

__all__ = ("Array", "Namespace", "SyncManager", "Value")


class Namespace:
    """A plain attribute bag (what ``manager.Namespace()`` shares)."""

    __module__ = "procly.managers"

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        shown = sorted(
            f"{name}={value!r}" for name, value in self.__dict__.items() if not name.startswith("_")
        )
        return f"{type(self).__name__}({', '.join(shown)})"


class Value:
    """A single value with ``get``/``set`` (what ``manager.Value()`` shares); *lock* is
    accepted for compatibility and ignored, as in the standard library."""

    __module__ = "procly.managers"

    def __init__(self, typecode: Any, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    def get(self) -> Any:
        return self._value

    def set(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._typecode!r}, {self._value!r})"

    value = property(get, set)


def Array(typecode: str, sequence: Any, lock: Any = True) -> array.array[Any]:
    """An :class:`array.array` (what ``manager.Array()`` shares); *lock* is ignored."""
    return array.array(typecode, sequence)


Array.__module__ = "procly.managers"


def _make_pool(*args: Any, **kwds: Any) -> Any:
    """``manager.Pool(...)``: a pool of the manager's context (else the default one),
    created in the server.  Raises :class:`~procly.ProcessError` if that context has no
    ``Pool``."""
    server = CLIENT.sending.current
    ctx = getattr(server, "ctx", None)
    if ctx is None:  # a server made by get_server() without a context: the default one
        ctx = DEFAULT_CONTEXT.get()
    factory = getattr(ctx, "Pool", None)
    if factory is None:
        raise ProcessError(f"the manager's context {ctx!r} offers no Pool")
    return factory(*args, **kwds)


class SyncManager(BaseManager):
    """A manager of dicts, lists, namespaces, queues, locks & co., values, arrays and pools.

    Drop-in for :class:`multiprocessing.managers.SyncManager`; see :class:`BaseManager`.
    """

    __module__ = "procly.managers"


SyncManager.register("Queue", queue.Queue)
SyncManager.register("JoinableQueue", queue.Queue)
SyncManager.register("Event", threading.Event, EventProxy)
SyncManager.register("Lock", threading.Lock, AcquirerProxy)
SyncManager.register("RLock", threading.RLock, AcquirerProxy)
SyncManager.register("Semaphore", threading.Semaphore, AcquirerProxy)
SyncManager.register("BoundedSemaphore", threading.BoundedSemaphore, AcquirerProxy)
SyncManager.register("Condition", threading.Condition, ConditionProxy)
SyncManager.register("Barrier", threading.Barrier, BarrierProxy)
SyncManager.register("Pool", _make_pool, PoolProxy)
SyncManager.register("list", list, ListProxy)
SyncManager.register("dict", dict, DictProxy)
SyncManager.register("Value", Value, ValueProxy)
SyncManager.register("Array", Array, ArrayProxy)
SyncManager.register("Namespace", Namespace, NamespaceProxy)
# types returned by methods of other proxies
SyncManager.register("Iterator", proxytype=IteratorProxy, create_method=False)
SyncManager.register("AsyncResult", create_method=False)
