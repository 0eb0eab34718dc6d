"""The table of shared objects and who holds them; answering one request (layer 3).

Used by :class:`~procly._managers._server.Server`, which adds the sockets and threads.

* ``objects``: id -> :class:`_Entry` (referent, exposed names, method_to_typeid, count).
* ``clients``: client id -> :class:`_Client` (references held, open connections).  A
  client id names one client *process*; when its last connection closes, every reference
  it still holds is dropped, so a killed client leaks nothing.
* A referent is deleted when its count reaches zero -- always outside :attr:`mutex`,
  because deleting it may run code that comes back here (a proxy stored inside it).
"""

from __future__ import annotations

import pickle
import queue
import threading
import traceback
from typing import Any

from .._errors import FrameError
from .._serial._pickler import dumps
from . import _proxy, _wire
from ._proxy import ERROR, PROXY, RETURN, TRACEBACK

__all__ = ("NO_REPLY", "ObjectTable", "Request", "decode")

# Exceptions used for control flow whose server traceback helps nobody (and costs time).
_QUIET = (KeyError, IndexError, StopIteration, queue.Empty, queue.Full)
NO_REPLY = _NO_REPLY = object()
_SIMPLE = frozenset({int, float, str, bytes, bool, type(None), complex})
ploads = pickle.loads
Registry = dict[str, tuple[Any, Any, Any, Any]]


class _Entry:
    __slots__ = ("exposed", "method_to_typeid", "names", "obj", "plain", "refcount", "typeid")

    def __init__(
        self, obj: Any, typeid: str, names: tuple[str, ...], m2t: dict[str, str] | None
    ) -> None:
        self.obj, self.typeid, self.names, self.method_to_typeid = obj, typeid, names, m2t
        self.exposed = frozenset(names)
        #: Exposed methods whose result is returned as is (not made a shared object).
        self.plain = self.exposed.difference(m2t or ())
        self.refcount = 0


class _Client:
    __slots__ = ("connected", "conns", "id", "pid", "refs", "unborn")

    def __init__(self, client_id: Any, pid: int | None) -> None:
        self.id, self.pid = client_id, pid
        self.refs: dict[int, int] = {}
        self.conns = 0
        #: Whether this process ever connected (a forked child may not have yet).
        self.connected = False
        #: Children forked by this process whose references it took at fork time and
        #: which have not connected yet: released with this process if they never do.
        self.unborn: list[_Client] = []


Request = tuple[Any, str, tuple[Any, ...], "dict[str, Any] | None"]


def decode(data: bytes) -> Request:
    """The request tuple ``(ident, method, args, kwds)`` in one frame.

    Raises :class:`~procly.errors.FrameError` for anything else (the caller closes the
    connection: the peer does not speak this protocol).
    """
    try:
        ident, name, args, kwds = ploads(data)
        hash(name)
    except Exception as exc:
        raise FrameError(f"malformed request ({type(exc).__name__}: {exc})") from None
    return ident, name, args, kwds


class ObjectTable:
    """Shared objects, their reference counts per client process, and request answering."""

    #: Where the owning server listens (what proxies compare against, see LocalServer).
    address: Any = None

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.objects: dict[int, _Entry] = {}
        self.clients: dict[Any, _Client] = {}
        self.mutex = threading.Lock()
        self._local = _Client(("server", id(self)), None)

    def stop(self) -> None:
        """Stop serving (the ``shutdown`` request); provided by the server."""
        raise NotImplementedError

    def connect_client(self, client_id: Any, pid: int | None) -> _Client:
        """Count one more open connection of the process *client_id*."""
        with self.mutex:
            client = self.clients.get(client_id)
            if client is None:
                client = self.clients[client_id] = _Client(client_id, pid)
            client.conns += 1
            client.connected = True
            client.pid = pid
        return client

    # -- one request ---------------------------------------------------------------------

    def answer(self, ch: _wire.Channel, client: _Client, request: Request) -> None:
        """Run one request (see :func:`decode`), send the reply (if it has one).

        Raises :class:`OSError` if the reply cannot be sent.  Kept short on purpose: each
        request wakes the server on a cold cache, so every extra line shows in the round
        trip.  Plain results skip the reply pickler.
        """
        ident, name, args, kwds = request
        if ident is None:
            reply = self._dispatch_special(client, name, args)
            if reply is not _NO_REPLY:
                self._reply(ch, client, reply)
            if name == "shutdown":  # only now: the reply must reach the client first
                self.stop()
            return
        entry = self.objects.get(ident)
        if entry is None or name not in entry.exposed:
            self._reply(ch, client, self._fallback(entry, ident, name, args, kwds))
            return
        try:
            if kwds:
                res = getattr(entry.obj, name)(*args, **kwds)
            else:
                res = getattr(entry.obj, name)(*args)
        except Exception as exc:
            tb = None if isinstance(exc, _QUIET) else traceback.format_exc()
            self._reply(ch, client, (ERROR, (exc, tb)))
            return
        m2t = entry.method_to_typeid
        typeid = m2t.get(name) if m2t else None
        if typeid is None and type(res) in _SIMPLE:
            ch.send_frame(pickle.dumps((RETURN, res), 5))
            return
        if typeid:
            self._reply(ch, client, (PROXY, self._register_result(client, typeid, res)))
        else:
            self._reply(ch, client, (RETURN, res))

    def serve_channel(self, ch: _wire.Channel, client: _Client) -> None:
        """Answer requests from *ch* until the peer goes away (a connection thread's life).

        The common request -- an exposed method, no keywords, a plain result -- is handled
        inline here; everything else goes through :meth:`answer`.  Raises
        :class:`EOFError` when the peer closes, :class:`~procly.errors.FrameError` for a
        malformed frame, :class:`OSError` when a reply cannot be sent.
        """
        objects, recv, pdumps = self.objects, ch.recv_frame, pickle.dumps
        sendall, pack = ch.sock.sendall, _wire.HEADER.pack
        entry: _Entry | None
        while True:
            data = recv()
            try:
                ident, name, args, kwds = ploads(data)
                entry = objects.get(ident) if ident is not None else None
                fast = entry is not None and not kwds and name in entry.plain
            except Exception as exc:
                raise FrameError(f"malformed request ({type(exc).__name__}: {exc})") from None
            if not fast:
                self.answer(ch, client, (ident, name, args, kwds))
                continue
            assert entry is not None
            try:
                res = getattr(entry.obj, name)(*args)
            except Exception as exc:
                tb = None if isinstance(exc, _QUIET) else traceback.format_exc()
                self._reply(ch, client, (ERROR, (exc, tb)))
                continue
            finally:
                entry = None  # an idle thread must not keep a released referent alive
                args = ()
            if type(res) in _SIMPLE:
                data = pdumps((RETURN, res), 5)
                sendall(pack(len(data)) + data)
            else:
                self._reply(ch, client, (RETURN, res))
            res = None

    def _reply(self, ch: _wire.Channel, client: _Client, reply: Any) -> None:
        send_ctx = _proxy.CLIENT.sending
        send_ctx.server, send_ctx.client = self, client
        try:
            data = dumps(reply)
        except Exception:
            data = dumps((TRACEBACK, traceback.format_exc()))
        finally:
            send_ctx.server = send_ctx.client = None
        ch.send_frame(data)

    def _fallback(self, entry: _Entry | None, ident: int, name: str, args: Any, kwds: Any) -> Any:
        """Methods every object answers even when not exposed, and the error otherwise."""
        if entry is None:
            return (TRACEBACK, f"KeyError: no shared object with id {ident!r} (it was released)\n")
        try:
            if name == "#GETVALUE":
                return (RETURN, entry.obj)
            if name == "__repr__":
                return (RETURN, repr(entry.obj))
            if name == "__str__":
                return (RETURN, str(entry.obj))
        except Exception:
            return (TRACEBACK, traceback.format_exc())
        return (
            TRACEBACK,
            f"AttributeError: method {name!r} of {type(entry.obj)!r} object is not in "
            f"exposed={entry.names!r}\n",
        )

    # -- server-level requests ---------------------------------------------------------------

    def _dispatch_special(self, client: _Client, name: str, args: Any) -> Any:
        try:
            if name == "decref":
                self._decref(client, args)
                return _NO_REPLY
            if name == "incref_quiet":
                self._incref(client, args, strict=False)
                return _NO_REPLY
            if name == "adopt_refs":
                self._adopt_refs(client, args[0], args[1])
                return (RETURN, None)
            if name == "incref":
                self._incref(client, args, strict=True)
                return (RETURN, None)
            if name == "create":
                typeid, cargs, ckwds = args
                if typeid not in self.registry:
                    return (TRACEBACK, f"KeyError: unknown typeid {typeid!r}\n")
                try:
                    return (RETURN, self.create(client, typeid, *cargs, **ckwds))
                except Exception as exc:  # the factory's own error, raised as itself
                    return (ERROR, (exc, traceback.format_exc()))
            if name == "get_methods":
                return (RETURN, self.objects[args[0]].names)
            if name == "dummy":
                return (RETURN, None)
            if name == "number_of_objects":
                return (RETURN, len(self.objects))
            if name == "debug_info":
                return (RETURN, self.debug_info())
            if name == "shutdown":
                return (RETURN, None)
            if name == "hello":
                return _NO_REPLY
            extra = getattr(self, "request_" + name, None) if name.isidentifier() else None
            if extra is not None:  # requests a server subclass adds (SharedMemoryServer)
                return (RETURN, extra(client, *args))
            return (TRACEBACK, f"ValueError: unknown server request {name!r}\n")
        except Exception:
            return (TRACEBACK, traceback.format_exc())

    def create(
        self, client: _Client, typeid: str, /, *args: Any, **kwds: Any
    ) -> tuple[int, tuple[str, ...]]:
        """Make a new shared object of *typeid*; its first reference belongs to *client*.

        Raises :class:`KeyError` for an unknown typeid and whatever the factory raises.
        """
        factory, exposed, method_to_typeid, _proxytype = self.registry[typeid]
        if factory is None:
            if kwds or len(args) != 1:
                raise ValueError(f"typeid {typeid!r} has no callable: pass exactly the object")
            obj = args[0]
        else:
            obj = factory(*args, **kwds)
        return self._register(client, typeid, obj, exposed, method_to_typeid)

    def _register(
        self, client: _Client, typeid: str, obj: Any, exposed: Any, m2t: Any
    ) -> tuple[int, tuple[str, ...]]:
        if exposed is None:
            exposed = _proxy.public_methods(obj)
        if m2t is not None:
            if not isinstance(m2t, dict):
                raise TypeError(f"Method_to_typeid {m2t!r}: type {type(m2t)!s}, not dict")
            exposed = [*exposed, *m2t]
        ident = id(obj)
        with self.mutex:
            entry = self.objects.get(ident)
            if entry is None or entry.obj is not obj:
                entry = self.objects[ident] = _Entry(obj, typeid, tuple(exposed), m2t or None)
            entry.refcount += 1
            client.refs[ident] = client.refs.get(ident, 0) + 1
        return ident, entry.names

    def _register_result(self, client: _Client, typeid: str, obj: Any) -> tuple[Any, ...]:
        _factory, exposed, m2t, proxytype = self.registry[typeid]
        ident, names = self._register(client, typeid, obj, exposed, m2t)
        return (typeid, ident, names, proxytype if proxytype is not None else _proxy.AutoProxy)

    def _incref(self, client: _Client, ids: Any, strict: bool) -> None:
        with self.mutex:
            for ident in ids:
                entry = self.objects.get(ident)
                if entry is None:
                    if strict:
                        raise KeyError(f"no shared object with id {ident!r} (it was released)")
                    continue
                entry.refcount += 1
                client.refs[ident] = client.refs.get(ident, 0) + 1

    def _decref(self, client: _Client, ids: Any) -> None:
        dead = []
        with self.mutex:
            for ident in ids:
                held = client.refs.get(ident, 0)
                if not held:  # not this process's to release
                    continue
                if held == 1:
                    del client.refs[ident]
                else:
                    client.refs[ident] = held - 1
                entry = self.objects.get(ident)
                if entry is not None:
                    entry.refcount -= 1
                    if entry.refcount <= 0:
                        dead.append(self.objects.pop(ident))
        del dead  # referents go now, outside the mutex

    def disconnect(self, client: _Client) -> None:
        """One connection of *client* closed; at its last, drop everything it held (and
        what was taken for its forked children that never connected)."""
        dead: list[_Entry] = []
        with self.mutex:
            client.conns -= 1
            if client.conns > 0:
                return
            self._release_locked(client, dead)
            for child in client.unborn:
                if not child.connected:
                    self._release_locked(child, dead)
            client.unborn.clear()
        del dead

    def _release_locked(self, client: _Client, dead: list[_Entry]) -> None:
        self.clients.pop(client.id, None)
        for ident, count in client.refs.items():
            entry = self.objects.get(ident)
            if entry is not None:
                entry.refcount -= count
                if entry.refcount <= 0:
                    dead.append(self.objects.pop(ident))
        client.refs.clear()

    def _adopt_refs(self, parent: _Client, child_id: Any, ids: Any) -> None:
        """Before a fork: take references for the child-to-be (it inherits the proxies)."""
        with self.mutex:
            child = self.clients.get(child_id)
            if child is None:
                child = self.clients[child_id] = _Client(child_id, None)
                parent.unborn.append(child)
        self._incref(child, ids, strict=False)

    # -- what proxies living inside this process use (see _proxy.LocalServer) ----------------

    def local_incref(self, ident: int) -> None:
        self._incref(self._local, (ident,), strict=False)

    def local_decref(self, ident: int) -> None:
        self._decref(self._local, (ident,))

    def credit(self, client: Any, ident: int) -> None:
        self._incref(client, (ident,), strict=False)

    def debug_info(self) -> str:
        with self.mutex:
            lines = [
                f"  {ident}:       refcount={entry.refcount}\n    {str(entry.obj)[:75]}"
                for ident, entry in self.objects.items()
            ]
        return "\n".join(lines)
