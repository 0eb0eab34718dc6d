"""Proxies: local stand-ins for objects that live in a manager's server process (layer 3).

::

    client process P                                       server process
    +------------------------------------------+           +--------------------------+
    | proxy._callmethod(name, args)            |           | objects: id -> referent  |
    |   -> CLIENT.call(address, request) ------+--frame--> | refs[P's client id][id]  |
    |      (this thread's Channel; pending     |           | handler thread: call,    |
    |       increfs/decrefs ride in front)     | <-frame---+ pickle the reply         |
    | finalizer of a dead proxy -> decref queue|           +--------------------------+
    +------------------------------------------+

* **One connection per (process, thread, server)**, authenticated once and reused for every
  call of that thread, so a call costs one send and one receive.  Keeping one connection
  per thread also keeps lock ownership right: an ``RLock`` in the server is owned by the
  server thread that serves one client thread.
* **References are counted per client process.**  Every proxy object holds exactly one
  reference, recorded in the server under its process's random *client id*.  A proxy that
  is garbage collected queues a decref, sent in front of the next call of the process
  (a finalizer must never write on a connection: it may run in the middle of another call
  on the same thread).  When the last connection of a process closes -- the process exited
  or was killed -- the server drops every reference that process still held, so a
  ``kill -9`` leaks nothing.
* **Creating and returning proxies costs no extra round trip**: the server credits the new
  reference to the calling process before replying (``create``, ``method_to_typeid``
  results, proxies inside results).  A proxy received from *another* process (through a
  queue, a pipe or as a ``Process`` argument) increfs once on arrival.
* **After fork**, the child gets a new client id; the proxies it inherited are queued for an
  incref, sent in front of its first call, and their connections are not used by the child.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from .._errors import FrameError
from .._proc import _process
from .._proc._spawning import is_spawning
from .._serial._pickler import dumps, loads, register
from . import _wire

__all__ = (
    "AutoProxy",
    "BaseProxy",
    "MakeProxyType",
    "RebuildProxy",
    "RemoteError",
    "Token",
)

_SIMPLE = frozenset({int, float, str, bytes, bool, type(None), complex})

# Reply kinds (first item of every reply tuple).
RETURN, ERROR, PROXY, TRACEBACK = 0, 1, 2, 3


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


class LocalServer(Protocol):
    """What a server running in this process offers its own proxies (see ``_server``)."""

    address: Any

    def local_incref(self, ident: int) -> None: ...
    def local_decref(self, ident: int) -> None: ...
    def credit(self, client: Any, ident: int) -> None: ...


class _Ref:
    """The one reference a proxy holds; ``gen`` says which incarnation of the process
    state owns it (a forked child's proxies are re-owned by its own, new generation)."""

    __slots__ = ("address", "authkey", "gen", "id", "local")

    def __init__(self, address: Any, authkey: bytes, ident: int, gen: int, local: bool) -> None:
        self.address, self.authkey, self.id, self.gen, self.local = (
            address,
            authkey,
            ident,
            gen,
            local,
        )


class _SendContext(threading.local):
    """Set by a server handler thread while it pickles a reply for one client."""

    server: LocalServer | None = None
    client: Any = None
    #: The server whose handler thread this is (factories such as ``Pool`` read its ctx).
    current: Any = None


class _Receiving(threading.local):
    """Set while a reply is unpickled: the key of the connection it came through."""

    authkey: bytes | None = None


class _ClientState:
    """This process's manager connections, pending reference changes and local servers.

    The module's one state object (:data:`CLIENT`); :meth:`reset` is its documented reset,
    run in every forked child.
    """

    def __init__(self) -> None:
        self.gen = 0
        self.fork_child_id: bytes | None = None
        self.fork_adopted: set[Any] = set()
        self.servers: dict[Any, LocalServer] = {}
        self.sending = _SendContext()
        self.receiving = _Receiving()
        self.reset()

    def reset(self) -> None:
        self.gen += 1
        self.pid = os.getpid()
        self.client_id = os.urandom(16)
        self.lock = threading.Lock()
        self.tls = threading.local()
        #: address -> the first connection this process opened there; kept open so that the
        #: server sees this process as alive for as long as it lives.
        self.anchors: dict[Any, _wire.Channel] = {}
        self.channels: weakref.WeakSet[_wire.Channel] = weakref.WeakSet()
        self.decrefs: dict[Any, deque[int]] = {}
        self.increfs: dict[Any, deque[int]] = {}
        self.proxies: weakref.WeakSet[BaseProxy] = weakref.WeakSet()

    def after_fork(self) -> None:
        """In a forked child: new identity, no inherited connection, re-own live proxies."""
        inherited = list(self.proxies)
        old_channels = list(self.channels)
        self.servers = {}
        self.sending = _SendContext()
        self.reset()
        for ch in old_channels:
            ch.close()  # only this child's copy of the descriptor
        child_id, adopted = self.fork_child_id, self.fork_adopted
        self.fork_child_id, self.fork_adopted = None, set()
        if child_id is not None:
            self.client_id = child_id  # the parent took our references under this name
        keys: dict[Any, bytes] = {}
        for proxy in inherited:
            ref = proxy.__dict__.get("_ref")
            if ref is not None and not ref.local:
                ref.gen = self.gen
                if ref.address in adopted:
                    keys.setdefault(ref.address, ref.authkey)
                else:  # the parent could not: take them at the first call
                    self.increfs.setdefault(ref.address, deque()).append(ref.id)
                self.proxies.add(proxy)
        # Connect now: the server releases what the parent took for us when this
        # connection closes (when we exit), even if we never call anything.
        for address, authkey in keys.items():
            try:
                self.adopt(address, _wire.connect(address, authkey, timeout=5.0))
            except Exception:
                pass  # the parent's connection closing releases them instead

    def before_fork(self) -> None:
        """In the parent, just before ``fork()``: take the references of every live proxy
        for the child-to-be, under a client id chosen now.

        The parent may drop its own proxies right after the fork, before the child ever
        runs: references taken by the child itself would come too late.  One round trip
        per server, only when proxies are alive; a server that cannot be reached is left
        to the child (it increfs at its first call).
        """
        self.fork_child_id, self.fork_adopted = None, set()
        if os.getpid() != self.pid:
            return
        by_address: dict[Any, tuple[bytes, list[int]]] = {}
        for proxy in list(self.proxies):
            ref = proxy.__dict__.get("_ref")
            if ref is not None and not ref.local and ref.gen == self.gen:
                by_address.setdefault(ref.address, (ref.authkey, []))[1].append(ref.id)
        if not by_address:
            return
        child_id = os.urandom(16)
        for address, (authkey, ids) in by_address.items():
            try:
                ch = self.channel(address, authkey)
                ch.sock.settimeout(5.0)  # a hung server must not hang fork()
                kind, _ = self.call(address, authkey, (None, "adopt_refs", (child_id, ids), {}))
                ch.sock.settimeout(None)
            except Exception:
                continue  # (call() dropped the connection if the reply may still come)
            if kind == RETURN:
                self.fork_adopted.add(address)
        self.fork_child_id = child_id

    def after_fork_parent(self) -> None:
        self.fork_child_id, self.fork_adopted = None, set()

    # -- connections ---------------------------------------------------------------------

    def channel(self, address: Any, authkey: bytes) -> _wire.Channel:
        """This thread's connection to *address*, opened (and authenticated) on first use.

        One connection per address, whatever key a proxy carries (as in the standard
        library): the process already proved it knows the server's key.  Managers that
        ``connect()`` always run a fresh handshake with their own key first.
        """
        try:
            chans: dict[Any, _wire.Channel] = self.tls.chans
        except AttributeError:
            chans = self.tls.chans = {}
        ch = chans.get(address)
        if ch is None:
            ch = self.adopt(address, _wire.connect(address, bytes(authkey)))
        return ch

    def adopt(self, address: Any, ch: _wire.Channel) -> _wire.Channel:
        """Make the authenticated *ch* this thread's connection to *address*."""
        ch.send_frame(dumps((None, "hello", (self.client_id, os.getpid()), {})))
        try:
            chans: dict[Any, _wire.Channel] = self.tls.chans
        except AttributeError:
            chans = self.tls.chans = {}
        old = chans.get(address)
        chans[address] = ch
        with self.lock:
            if old is not None and self.anchors.get(address) is old:
                self.anchors[address] = ch
            self.anchors.setdefault(address, ch)
            self.channels.add(ch)
        if old is not None:
            old.close()
        return ch

    def forget(self, address: Any) -> None:
        """The server at *address* is gone: close this process's connections to it."""
        with self.lock:
            anchor = self.anchors.pop(address, None)
        self.decrefs.pop(address, None)
        self.increfs.pop(address, None)
        self.drop(address)
        if anchor is not None:
            anchor.close()

    def drop(self, address: Any) -> None:
        """Forget this thread's connection to *address* (broken or interrupted mid-call)."""
        chans = getattr(self.tls, "chans", None)
        ch = chans.pop(address, None) if chans else None
        if ch is not None:
            with self.lock:
                if self.anchors.get(address) is ch:
                    del self.anchors[address]
            ch.close()

    def call(self, address: Any, authkey: bytes, request: tuple[Any, ...]) -> Any:
        """Send *request*, return the decoded reply tuple.

        Raises :class:`~procly.errors.SerializationError` (nothing sent) if *request* does
        not pickle, :class:`EOFError` if the server went away, :class:`OSError` if it cannot
        be reached.
        """
        data = None
        if not request[3]:
            for arg in request[2]:
                if type(arg) not in _SIMPLE:
                    break
            else:  # nothing the reducer hook could change: the C pickler alone
                data = pickle.dumps(request, 5)
        if data is None:
            data = dumps(request)
        try:
            ch = self.tls.chans[address]
        except (AttributeError, KeyError):
            ch = self.channel(address, authkey)
        try:
            if self.increfs.get(address) or self.decrefs.get(address):
                ch.send_frames([*self._pending(address), data])
                reply = ch.recv_frame()
            else:
                reply = ch.roundtrip(data)
        except EOFError as exc:
            self.drop(address)
            if isinstance(exc, FrameError):
                raise
            raise EOFError(
                f"the manager server at {address!r} closed the connection "
                "(it was shut down or died)"
            ) from None
        except BaseException:
            # Interrupted or failed mid-call: the reply may still come; never reuse.
            self.drop(address)
            raise
        if b"RebuildProxy" not in reply:  # no proxy inside: nothing to tell RebuildProxy
            return loads(reply)
        receiving = self.receiving
        receiving.authkey = authkey  # proxies inside the reply belong to this server's key
        try:
            return loads(reply)
        finally:
            receiving.authkey = None

    def _pending(self, address: Any) -> list[bytes]:
        frames = []
        for kind, table in (("incref_quiet", self.increfs), ("decref", self.decrefs)):
            queue = table.get(address)
            if not queue:
                continue
            ids = []
            with contextlib.suppress(IndexError):
                while True:
                    ids.append(queue.popleft())
            if ids:
                frames.append(dumps((None, kind, tuple(ids), {})))
        return frames

    def queue_decref(self, ref: _Ref) -> None:
        """Finalizer of a proxy: never blocks, never writes (see the module docstring)."""
        if ref.local:
            server = self.servers.get(ref.address)
            if server is not None:
                server.local_decref(ref.id)
            return
        if ref.gen != self.gen:
            return  # inherited through fork and not re-owned: not ours to release
        queue = self.decrefs.get(ref.address)
        if queue is None:
            queue = self.decrefs.setdefault(ref.address, deque())
        queue.append(ref.id)

    def flush(self, address: Any, authkey: bytes) -> None:
        """Send the pending reference changes for *address* now (shutdown, tests)."""
        if self.increfs.get(address) or self.decrefs.get(address):
            self.call(address, authkey, (None, "dummy", (), {}))


CLIENT = _ClientState()
os.register_at_fork(
    before=CLIENT.before_fork,
    after_in_parent=CLIENT.after_fork_parent,
    after_in_child=CLIENT.after_fork,
)


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
        self._ref = ref = _Ref(
            token.address, self._authkey, token.id, state.gen, server is not None
        )
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


def public_methods(obj: Any) -> list[str]:
    """The names of the callable public attributes of *obj* (what AutoProxy exposes)."""
    names = []
    for name in dir(obj):
        if name[0] == "_":
            continue
        try:
            if callable(getattr(obj, name)):
                names.append(name)
        except Exception:
            continue
    return names


@contextlib.contextmanager
def sending_to(server: LocalServer, client: Any) -> Iterator[None]:
    """While pickling a reply for *client*: proxies of *server* inside it carry a reference."""
    send = CLIENT.sending
    send.server, send.client = server, client
    try:
        yield
    finally:
        send.server = send.client = None


def _as_list(view: Any) -> tuple[Any, ...]:
    return (list, (list(view),))


# As in the standard library: dict views returned by a managed dict arrive as lists.
_VIEW_TYPES: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))
for _view in _VIEW_TYPES:
    register(_view, _as_list)
