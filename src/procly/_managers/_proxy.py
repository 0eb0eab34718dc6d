"""Proxies: local stand-ins for objects that live in a manager's server process (layer 3).

A proxy holds a :class:`Token` (typeid, server address, object id) and one reference to the
object (see :mod:`._client` for connections and reference counting).  Its methods call
:meth:`BaseProxy._callmethod`, one round trip each.  Pickled, it travels as its token: the
receiving process takes its own reference on arrival (or, inside its own server, stands for
the referent without a connection).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .._proc import _process
from .._proc._spawning import is_spawning
from .._serial._pickler import register
from ._client import CLIENT as CLIENT
from ._client import ERROR as ERROR
from ._client import PROXY as PROXY
from ._client import RETURN as RETURN
from ._client import TRACEBACK as TRACEBACK
from ._client import LocalServer as LocalServer
from ._client import Ref

__all__ = (
    "AutoProxy",
    "BaseProxy",
    "MakeProxyType",
    "RebuildProxy",
    "RemoteError",
    "Token",
)


class RemoteError(Exception):
    """Raised by a proxy call when the server failed outside the method itself (unknown
    object, a result that cannot be pickled, ...); ``args[0]`` is the server's traceback."""

    __module__ = "procly.managers"

    def __str__(self) -> str:
        return "\n" + "-" * 75 + "\n" + str(self.args[0]) + "-" * 75


class Token:
    """What names a shared object: its ``typeid``, its server's ``address`` and its ``id``."""

    __module__ = "procly.managers"
    __slots__ = ("address", "id", "typeid")

    def __init__(self, typeid: str, address: Any, id: int) -> None:
        self.typeid, self.address, self.id = typeid, address, id

    def __getstate__(self) -> tuple[str, Any, int]:
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state: tuple[str, Any, int]) -> None:
        self.typeid, self.address, self.id = state

    def __repr__(self) -> str:
        return f"{type(self).__name__}(typeid={self.typeid!r}, address={self.address!r}, id={self.id!r})"


def default_authkey() -> bytes:
    """``current_process().authkey``, the key of this process tree."""
    return bytes(_process.current_process().authkey)


def raise_for(kind: int, value: Any) -> None:
    """Raise what a non-RETURN, non-PROXY reply says."""
    if kind == ERROR:
        exc, tb = value
        if tb:
            from .._errors import RemoteTraceback

            exc.__cause__ = RemoteTraceback(tb)
        raise exc
    if kind == TRACEBACK:
        raise RemoteError(value)
    raise ValueError(f"unrecognized message kind {kind!r}")


class BaseProxy:
    """The base class of every proxy: a picklable handle with :meth:`_callmethod`.

    Subclasses list the referent's methods they expose in ``_exposed_`` and map methods
    that return other shared objects to typeids in ``_method_to_typeid_``.
    """

    __module__ = "procly.managers"
    _exposed_: tuple[str, ...] | None = None
    _method_to_typeid_: dict[str, str] | None = None
    _counter = iter(range(1, 1 << 62))

    def __init__(
        self,
        token: Token,
        serializer: str = "pickle",
        manager: Any = None,
        authkey: bytes | None = None,
        exposed: Sequence[str] | None = None,
        incref: bool = True,
        manager_owned: bool = False,
    ) -> None:
        self._token = token
        self._serializer = serializer
        self._manager = manager
        if authkey is None:
            authkey = manager._authkey if manager is not None else default_authkey()
        self._authkey = bytes(authkey)
        self._owned_by_manager = manager_owned
        self._id = next(BaseProxy._counter)
        state = CLIENT
        server = state.servers.get(token.address) if manager_owned else None
        if server is None:  # an ordinary client proxy
            if incref:
                self._incref()
        elif incref:  # inside its own server: count the reference without a connection
            server.local_incref(token.id)
        self._ref = ref = Ref(token.address, self._authkey, token.id, state.gen, server is not None)
        state.proxies.add(self)
        fin = weakref.finalize(self, state.queue_decref, ref)
        fin.atexit = False

    def _incref(self) -> None:
        kind, value = CLIENT.call(
            self._token.address, self._authkey, (None, "incref", (self._token.id,), {})
        )
        if kind != RETURN:
            raise_for(kind, value)

    def _callmethod(
        self, methodname: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """Call ``methodname(*args, **kwds)`` on the referent and return the result.

        An exception raised by the method is re-raised here as itself, with the server's
        traceback as ``__cause__``; :class:`RemoteError` for a failure outside the method;
        :class:`EOFError` if the server has gone away.
        """
        token = self._token
        kind, value = CLIENT.call(token.address, self._authkey, (token.id, methodname, args, kwds))
        if kind == RETURN:
            return value
        if kind == PROXY:
            typeid, ident, exposed, proxytype = value
            return proxytype(
                Token(typeid, token.address, ident),
                self._serializer,
                manager=self._manager,
                authkey=self._authkey,
                exposed=exposed,
                incref=False,  # the server credited the reference to this process already
            )
        raise_for(kind, value)
        raise AssertionError("unreachable")

    def _getvalue(self) -> Any:
        """A copy of the referent (it must be picklable)."""
        return self._callmethod("#GETVALUE")

    def __reduce__(self) -> tuple[Any, ...]:
        kwds: dict[str, Any] = {}
        if is_spawning():  # the key travels only into a new child of this process tree
            kwds["authkey"] = self._authkey
        send = CLIENT.sending
        server = send.server
        if server is not None and server.address == self._token.address:
            server.credit(send.client, self._token.id)
            kwds["incref"] = False  # the reply carries the reference with it
        if getattr(self, "_isauto", False):
            kwds["exposed"] = self._exposed_
            return (RebuildProxy, (AutoProxy, self._token, self._serializer, kwds))
        return (RebuildProxy, (type(self), self._token, self._serializer, kwds))

    def __deepcopy__(self, memo: Any) -> Any:
        return self._getvalue()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._token.typeid!r} at {id(self):#x}>"

    def __str__(self) -> str:
        try:
            return str(self._callmethod("__repr__"))
        except Exception:
            return repr(self)[:-1] + "; '__str__()' failed>"


def RebuildProxy(
    func: Callable[..., BaseProxy], token: Token, serializer: str, kwds: dict[str, Any]
) -> BaseProxy:
    """Unpickle a proxy: in its own server it stands for the referent without a connection
    (manager-owned), elsewhere it takes its own reference (one round trip)."""
    if token.address in CLIENT.servers:
        kwds["manager_owned"] = True
    if "authkey" not in kwds and CLIENT.receiving.authkey is not None:
        kwds["authkey"] = CLIENT.receiving.authkey
    incref = kwds.pop("incref", True)
    return func(token, serializer, incref=incref, **kwds)


_PROXY_TYPES: dict[tuple[str, tuple[str, ...]], type[BaseProxy]] = {}  # never shrinks


def MakeProxyType(name: str, exposed: Sequence[str]) -> type[BaseProxy]:
    """A proxy class whose methods forward *exposed* to the referent (cached per name)."""
    exposed = tuple(exposed)
    cached = _PROXY_TYPES.get((name, exposed))
    if cached is not None:
        return cached
    namespace: dict[str, Any] = {}
    for meth in exposed:
        namespace[meth] = _forwarder(meth)
    namespace["_exposed_"] = exposed
    proxytype: type[BaseProxy] = type(name, (BaseProxy,), namespace)
    _PROXY_TYPES[(name, exposed)] = proxytype
    return proxytype


def _forwarder(meth: str) -> Callable[..., Any]:
    def method(self: BaseProxy, /, *args: Any, **kwds: Any) -> Any:
        return self._callmethod(meth, args, kwds)

    method.__name__ = meth
    return method


def AutoProxy(
    token: Token,
    serializer: str = "pickle",
    manager: Any = None,
    authkey: bytes | None = None,
    exposed: Sequence[str] | None = None,
    incref: bool = True,
    manager_owned: bool = False,
) -> BaseProxy:
    """A proxy whose methods are the referent's public methods, as told by the server."""
    if exposed is None:
        if authkey is None:
            authkey = manager._authkey if manager is not None else default_authkey()
        kind, value = CLIENT.call(
            token.address, bytes(authkey), (None, "get_methods", (token.id,), {})
        )
        if kind != RETURN:
            raise_for(kind, value)
        exposed = value
    proxytype = MakeProxyType(f"AutoProxy[{token.typeid}]", tuple(exposed or ()))
    proxy = proxytype(
        token,
        serializer,
        manager=manager,
        authkey=authkey,
        incref=incref,
        manager_owned=manager_owned,
    )
    proxy._isauto = True  # type: ignore[attr-defined]
    return proxy


def all_methods(obj: Any) -> list[str]:
    """The names of every callable attribute of *obj* (standard-library helper)."""
    names = []
    for name in dir(obj):
        try:
            if callable(getattr(obj, name)):
                names.append(name)
        except Exception:
            continue
    return names


def public_methods(obj: Any) -> list[str]:
    """The names of the callable public attributes of *obj* (what AutoProxy exposes)."""
    return [name for name in all_methods(obj) if name[0] != "_"]


def _as_list(view: Any) -> tuple[Any, ...]:
    return (list, (list(view),))


# As in the standard library: dict views returned by a managed dict arrive as lists.
_VIEW_TYPES: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
for _view in _VIEW_TYPES:
    register(_view, _as_list)
