"""The client side of managers: this process's connections and references (layer 3).

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
* **Fork**: just before ``fork()`` the parent takes the references of its live proxies for
  the child-to-be, under a client id it picks for it (one round trip per server); the child
  adopts that id and connects at once, so its inherited proxies stay valid even if the
  parent drops its own right after the fork, and are released when the child exits.  The
  parent's connections are never used by the child.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import FrameError
from .._serial._pickler import dumps, loads
from . import _wire

if TYPE_CHECKING:
    from ._proxy import BaseProxy

__all__ = ("CLIENT", "ERROR", "PROXY", "RETURN", "TRACEBACK", "LocalServer", "Ref")

_SIMPLE = frozenset({int, float, str, bytes, bool, type(None), complex})

# Reply kinds (first item of every reply tuple).
RETURN, ERROR, PROXY, TRACEBACK = 0, 1, 2, 3


class LocalServer(Protocol):
    """What a server running in this process offers its own proxies (see ``_server``)."""

    address: Any

    def local_incref(self, ident: int) -> None: ...
    def local_decref(self, ident: int) -> None: ...
    def credit(self, client: Any, ident: int) -> None: ...


class Ref:
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
        outer = receiving.authkey  # (a proxy's incref may call in while we unpickle)
        receiving.authkey = authkey  # proxies inside the reply belong to this server's key
        try:
            return loads(reply)
        finally:
            receiving.authkey = outer

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

    def queue_decref(self, ref: Ref) -> None:
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
