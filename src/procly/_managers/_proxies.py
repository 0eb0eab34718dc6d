"""The proxy types of :class:`~procly.managers.SyncManager` (layer 3).

Same names and methods as the standard library's, with fewer round trips where the result
allows it (see :mod:`._proxy` for the transport):

* iterating a :class:`DictProxy` fetches all keys in one call (a snapshot) instead of one
  call per key; iterating a :class:`ListProxy` fetches the list in one call instead of one
  ``__getitem__`` per index.  Both iterate what the object held when iteration started;
  the standard library's per-item iteration could instead raise ``RuntimeError`` or skip
  items if another process changed the object meanwhile.
* ``keys()``, ``values()`` and ``items()`` return lists, as with the standard library.
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable, Iterator
from typing import Any

from ._proxy import BaseProxy, MakeProxyType

__all__ = (
    "AcquirerProxy",
    "ArrayProxy",
    "BarrierProxy",
    "BaseListProxy",
    "BasePoolProxy",
    "ConditionProxy",
    "DictProxy",
    "EventProxy",
    "IteratorProxy",
    "ListProxy",
    "NamespaceProxy",
    "PoolProxy",
    "ValueProxy",
)


class IteratorProxy(BaseProxy):
    """Proxy of an iterator or generator living in the server."""

    __module__ = "procly.managers"
    _exposed_ = ("__next__", "send", "throw", "close")

    def __iter__(self) -> IteratorProxy:
        return self

    def __next__(self, *args: Any) -> Any:
        return self._callmethod("__next__", args)

    def send(self, *args: Any) -> Any:
        return self._callmethod("send", args)

    def throw(self, *args: Any) -> Any:
        return self._callmethod("throw", args)

    def close(self, *args: Any) -> Any:
        return self._callmethod("close", args)


class AcquirerProxy(BaseProxy):
    """Proxy of a lock or semaphore; usable in a ``with`` statement."""

    __module__ = "procly.managers"
    _exposed_: tuple[str, ...] = ("acquire", "release")

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> Any:
        args = (blocking,) if timeout is None else (blocking, timeout)
        return self._callmethod("acquire", args)

    def release(self) -> Any:
        return self._callmethod("release")

    def __enter__(self) -> Any:
        return self._callmethod("acquire")

    def __exit__(self, *exc_info: object) -> Any:
        return self._callmethod("release")


class ConditionProxy(AcquirerProxy):
    """Proxy of a :class:`threading.Condition`."""

    __module__ = "procly.managers"
    _exposed_ = ("acquire", "release", "wait", "notify", "notify_all")

    def wait(self, timeout: float | None = None) -> Any:
        return self._callmethod("wait", (timeout,))

    def notify(self, n: int = 1) -> Any:
        return self._callmethod("notify", (n,))

    def notify_all(self) -> Any:
        return self._callmethod("notify_all")

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until *predicate* (evaluated here, under the lock) is true or *timeout* passes."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class EventProxy(BaseProxy):
    """Proxy of a :class:`threading.Event`."""

    __module__ = "procly.managers"
    _exposed_ = ("is_set", "set", "clear", "wait")

    def is_set(self) -> bool:
        return bool(self._callmethod("is_set"))

    def set(self) -> None:
        self._callmethod("set")

    def clear(self) -> None:
        self._callmethod("clear")

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._callmethod("wait", (timeout,)))


class BarrierProxy(BaseProxy):
    """Proxy of a :class:`threading.Barrier`."""

    __module__ = "procly.managers"
    _exposed_ = ("__getattribute__", "wait", "abort", "reset")

    def wait(self, timeout: float | None = None) -> int:
        return int(self._callmethod("wait", (timeout,)))

    def abort(self) -> None:
        self._callmethod("abort")

    def reset(self) -> None:
        self._callmethod("reset")

    @property
    def parties(self) -> int:
        return int(self._callmethod("__getattribute__", ("parties",)))

    @property
    def n_waiting(self) -> int:
        return int(self._callmethod("__getattribute__", ("n_waiting",)))

    @property
    def broken(self) -> bool:
        return bool(self._callmethod("__getattribute__", ("broken",)))


class NamespaceProxy(BaseProxy):
    """Proxy of a :class:`~procly.managers.Namespace`: public attributes live in the server."""

    __module__ = "procly.managers"
    _exposed_ = ("__getattribute__", "__setattr__", "__delattr__")

    def __getattr__(self, key: str) -> Any:
        if key[0] == "_":
            return object.__getattribute__(self, key)
        return object.__getattribute__(self, "_callmethod")("__getattribute__", (key,))

    def __setattr__(self, key: str, value: Any) -> None:
        if key[0] == "_":
            object.__setattr__(self, key, value)
            return
        object.__getattribute__(self, "_callmethod")("__setattr__", (key, value))

    def __delattr__(self, key: str) -> None:
        if key[0] == "_":
            object.__delattr__(self, key)
            return
        object.__getattribute__(self, "_callmethod")("__delattr__", (key,))


class ValueProxy(BaseProxy):
    """Proxy of a :class:`~procly.managers.Value`: ``get()``, ``set()`` and ``.value``."""

    __module__ = "procly.managers"
    _exposed_ = ("get", "set")

    def get(self) -> Any:
        return self._callmethod("get")

    def set(self, value: Any) -> None:
        self._callmethod("set", (value,))

    value = property(get, set)
    __class_getitem__: Any = classmethod(types.GenericAlias)


_LIST_METHODS = (
    "__add__", "__contains__", "__delitem__", "__getitem__", "__len__", "__mul__",
    "__reversed__", "__rmul__", "__setitem__", "append", "count", "extend", "index",
    "insert", "pop", "remove", "reverse", "sort", "__imul__",
)  # fmt: skip
BaseListProxy = MakeProxyType("BaseListProxy", _LIST_METHODS)
BaseListProxy.__module__ = "procly.managers"


class ListProxy(BaseListProxy):  # type: ignore[valid-type,misc]
    """Proxy of a list; iteration fetches the whole list in one round trip."""

    __module__ = "procly.managers"

    def __iadd__(self, value: Any) -> ListProxy:
        self._callmethod("extend", (value,))
        return self

    def __imul__(self, value: Any) -> ListProxy:
        self._callmethod("__imul__", (value,))
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self._callmethod("#GETVALUE"))

    def __getitem__(self, index: Any) -> Any:
        return self._callmethod("__getitem__", (index,))

    def __setitem__(self, index: Any, value: Any) -> None:
        self._callmethod("__setitem__", (index, value))

    def __len__(self) -> int:
        return int(self._callmethod("__len__"))

    def append(self, value: Any) -> None:
        self._callmethod("append", (value,))

    __class_getitem__: Any = classmethod(types.GenericAlias)


_DICT_METHODS = (
    "__contains__", "__delitem__", "__getitem__", "__iter__", "__len__", "__setitem__",
    "clear", "copy", "get", "items", "keys", "pop", "popitem", "setdefault", "update",
    "values",
)  # fmt: skip
_BaseDictProxy = MakeProxyType("DictProxy", _DICT_METHODS)
_BaseDictProxy._method_to_typeid_ = {"__iter__": "Iterator"}  # for _callmethod("__iter__")


class DictProxy(_BaseDictProxy):  # type: ignore[valid-type,misc]
    """Proxy of a dict; iteration fetches every key in one round trip."""

    __module__ = "procly.managers"

    def __getitem__(self, key: Any) -> Any:
        return self._callmethod("__getitem__", (key,))

    def __setitem__(self, key: Any, value: Any) -> None:
        self._callmethod("__setitem__", (key, value))

    def __delitem__(self, key: Any) -> None:
        self._callmethod("__delitem__", (key,))

    def __contains__(self, key: Any) -> bool:
        return bool(self._callmethod("__contains__", (key,)))

    def __len__(self) -> int:
        return int(self._callmethod("__len__"))

    def __iter__(self) -> Iterator[Any]:
        return iter(self._callmethod("keys"))

    def get(self, key: Any, default: Any = None) -> Any:
        return self._callmethod("get", (key, default))

    def update(self, other: Any = (), /, **kwds: Any) -> None:
        """One round trip whatever *other* is: a generator or any iterable of pairs is
        collected here, another proxy is fetched in one call."""
        if isinstance(other, BaseProxy):
            other = other._getvalue()
        elif not isinstance(other, (dict, list, tuple)):
            other = dict(other) if hasattr(other, "keys") else list(other)
        self._callmethod("update", (other,), kwds)

    def keys(self) -> list[Any]:
        return list(self._callmethod("keys"))

    def values(self) -> list[Any]:
        return list(self._callmethod("values"))

    def items(self) -> list[tuple[Any, Any]]:
        return list(self._callmethod("items"))

    __class_getitem__: Any = classmethod(types.GenericAlias)


ArrayProxy = MakeProxyType("ArrayProxy", ("__len__", "__getitem__", "__setitem__"))
ArrayProxy.__module__ = "procly.managers"

BasePoolProxy = MakeProxyType(
    "BasePoolProxy",
    (
        "apply",
        "apply_async",
        "close",
        "imap",
        "imap_unordered",
        "join",
        "map",
        "map_async",
        "starmap",
        "starmap_async",
        "terminate",
    ),
)
BasePoolProxy.__module__ = "procly.managers"
BasePoolProxy._method_to_typeid_ = {
    "apply_async": "AsyncResult",
    "map_async": "AsyncResult",
    "starmap_async": "AsyncResult",
    "imap": "Iterator",
    "imap_unordered": "Iterator",
}


class PoolProxy(BasePoolProxy):  # type: ignore[valid-type,misc]
    """Proxy of a process pool living in the manager's server process."""

    __module__ = "procly.managers"

    def __enter__(self) -> PoolProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()
