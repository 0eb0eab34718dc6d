"""The manager server: shared objects, their reference counts, and the threads serving them.

::

    server process
    +-----------------------------------------------------------------------------+
    |  accept loop (serve_forever's thread)                                       |
    |    selector: listening socket + wake-up pair                                |
    |    accept() -> start a handler thread (at most MAX_PENDING unauthenticated) |
    |                                                                             |
    |  handler thread, one per client connection                                  |
    |    1. HMAC handshake under a total deadline (nothing unpickled before)      |
    |    2. loop: frame -> (id, method, args, kwds) -> call referent -> reply     |
    |                                                                             |
    |  objects: id -> _Entry(referent, exposed, method_to_typeid, refcount)       |
    |  clients: client id -> _Client(refs: id -> count, open connections)         |
    +-----------------------------------------------------------------------------+

* **accept loop**: only accepts and starts threads, so a client that stalls in the handshake,
  a wrong key or a flood of connections never delays anyone else.  Past
  :data:`MAX_PENDING` connections still in their handshake, new ones are closed at once
  (and logged); established clients are not affected.  ``EMFILE`` and friends are logged
  and retried after a short pause.
* **handler thread**: authenticates (``procly._proc._auth`` over the socket, see
  :mod:`._wire`), then serves one client thread's calls in order.  A method that blocks
  (``Queue.get``, ``Lock.acquire``) blocks only this thread.  A malformed frame (bad
  length, not a pickle, not a request) is logged and closes this connection only.
* **references**: each reference is held by a client *process* (its random client id, sent
  in the first frame).  When the last connection of a process closes, its references are
  dropped: a client that was killed leaks nothing.  An object is deleted when its count
  reaches zero.

Security: a manager trusts every authenticated client completely -- requests are pickles,
and unpickling runs code.  The authkey is the only protection, so serve on loopback (or a
Unix socket, the default) unless the authkey is secret and the network trusted.
"""

from __future__ import annotations

import os
import pickle
import queue
import selectors
import shutil
import socket
import sys
import tempfile
import threading
import traceback
from typing import Any

from .._errors import FrameError
from .._proc._logger import get_logger
from .._serial._pickler import dumps, loads
from . import _proxy, _wire
from ._proxy import ERROR, PROXY, RETURN, TRACEBACK

__all__ = ("HANDSHAKE_TIMEOUT", "MAX_PENDING", "Server")

#: Seconds a new connection has to complete the authkey handshake.
HANDSHAKE_TIMEOUT = 5.0
#: Connections allowed in their handshake at once; more are closed immediately.
MAX_PENDING = 256
# Exceptions used for control flow whose server traceback helps nobody (and costs time).
_QUIET = (KeyError, IndexError, StopIteration, queue.Empty, queue.Full)
_NO_REPLY = object()
_SIMPLE = frozenset({int, float, str, bytes, bool, type(None), complex})
ploads = pickle.loads

Registry = dict[str, tuple[Any, Any, Any, Any]]


class _Entry:
    __slots__ = ("exposed", "method_to_typeid", "names", "obj", "refcount", "typeid")

    def __init__(
        self, obj: Any, typeid: str, names: tuple[str, ...], m2t: dict[str, str] | None
    ) -> None:
        self.obj, self.typeid, self.names, self.method_to_typeid = obj, typeid, names, m2t
        self.exposed = frozenset(names)
        self.refcount = 0


class _Client:
    __slots__ = ("conns", "id", "pid", "refs")

    def __init__(self, client_id: Any, pid: int | None) -> None:
        self.id, self.pid = client_id, pid
        self.refs: dict[int, int] = {}
        self.conns = 0


def bind(address: Any) -> tuple[socket.socket, Any, str | None]:
    """A listening socket for *address* (``None``: a Unix socket in a private directory).

    Returns ``(socket, actual address, directory to remove at close)``.  Raises
    :class:`OSError` (address in use, ...) or :class:`ValueError` for a bad address.
    """
    tmpdir = None
    if address is None:
        tmpdir = tempfile.mkdtemp(prefix="procly-mgr-")  # mode 0700: only this user
        address = os.path.join(tmpdir, "sock")
    sock = socket.socket(_wire.family_of(address), socket.SOCK_STREAM)
    try:
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    actual = sock.getsockname() if sock.family != socket.AF_UNIX else address
    return sock, actual, tmpdir


class Server:
    """Serves the objects of one manager (``BaseManager.get_server()`` returns one).

    Raises :class:`TypeError` for a non-bytes *authkey*, :class:`ValueError` for an unknown
    serializer, :class:`OSError` if the address cannot be bound.
    """

    __module__ = "procly.managers"
    public = ("shutdown", "create", "accept_connection", "get_methods", "debug_info",
              "number_of_objects", "dummy", "incref", "decref")  # fmt: skip

    def __init__(
        self,
        registry: Registry,
        address: Any,
        authkey: bytes,
        serializer: str = "pickle",
        ctx: Any = None,
        *,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if not isinstance(authkey, bytes):
            raise TypeError(f"Authkey {authkey!r} is type {type(authkey)!s}, not bytes")
        if serializer != "pickle":
            raise ValueError(
                f"procly managers support serializer='pickle' only, not {serializer!r}"
            )
        self.registry = registry
        self.authkey = bytes(authkey)
        self.ctx = ctx
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self.listener, self.address, self._tmpdir = bind(address)
        self.objects: dict[int, _Entry] = {}
        self.clients: dict[Any, _Client] = {}
        self.mutex = threading.Lock()
        self.stop_event = threading.Event()
        self._pending = 0
        self._channels: set[_wire.Channel] = set()
        self._local = _Client(("server", os.getpid()), os.getpid())
        self._wake_r, self._wake_w = socket.socketpair()
        self.log = get_logger()

    # -- lifecycle ---------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until a client asks for shutdown (or Ctrl-C), then exit the process, as the
        standard library does (``SystemExit(0)``)."""
        self.serve()
        sys.exit(0)

    def serve(self) -> None:
        """Serve until :meth:`stop`; close everything on the way out (does not exit)."""
        _proxy.CLIENT.servers[self.address] = self
        try:
            self._accept_loop()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def stop(self) -> None:
        """Make :meth:`serve` return (thread-safe, idempotent)."""
        self.stop_event.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close(self) -> None:
        self.stop_event.set()
        _proxy.CLIENT.servers.pop(self.address, None)
        self.listener.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        with self.mutex:
            channels = list(self._channels)
            dead = list(self.objects.values())
            self.objects.clear()
        for ch in channels:  # wake handler threads blocked in recv
            try:
                ch.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        del dead  # referents go now, outside the mutex (their __del__ may call back)
        self._wake_r.close()
        self._wake_w.close()

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self.stop_event.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        continue
                    self._accept_one()
        finally:
            sel.close()

    def _accept_one(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS...: keep serving, try again soon
            self.log.error("manager server: accept failed: %s", exc)
            self.stop_event.wait(0.05)
            return
        sock.setblocking(True)
        with self.mutex:
            if self._pending >= self.max_pending:
                self.log.error(
                    "manager server: %d connections in handshake, refusing one", self._pending
                )
                sock.close()
                return
            self._pending += 1
        try:
            threading.Thread(target=self._handle, args=(sock,), daemon=True,
                             name="procly-manager-conn").start()  # fmt: skip
        except RuntimeError as exc:  # cannot start a thread: refuse this connection only
            with self.mutex:
                self._pending -= 1
            self.log.error("manager server: cannot serve a new connection: %s", exc)
            sock.close()

    # -- one connection ----------------------------------------------------------------------

    def _handle(self, sock: socket.socket) -> None:
        try:
            try:
                ch = _wire.accepted(sock, self.authkey, self.handshake_timeout)
            finally:
                with self.mutex:
                    self._pending -= 1
        except Exception as exc:
            self.log.warning("manager server: handshake failed: %s: %s", type(exc).__name__, exc)
            sock.close()
            return
        client = None
        _proxy.CLIENT.sending.current = self
        try:
            client = self._hello(ch)
            self._serve(ch, client)
        except EOFError as exc:
            if isinstance(exc, FrameError):
                self.log.error("manager server: closing a connection: %s", exc)
        except OSError:
            pass
        except Exception as exc:
            self.log.error("manager server: closing a connection: %s: %s", type(exc).__name__, exc)
        finally:
            with self.mutex:
                self._channels.discard(ch)
            ch.close()
            if client is not None:
                self._disconnect(client)

    def _hello(self, ch: _wire.Channel) -> _Client:
        """Read the client's first frame, which names its process (``hello``)."""
        with self.mutex:
            self._channels.add(ch)
        request = _decode(ch.recv_frame())
        client_id: Any = ("anonymous", id(ch))
        pid = None
        if request[0] is None and request[1] == "hello":
            client_id, pid = request[2]
        with self.mutex:
            client = self.clients.get(client_id)
            if client is None:
                client = self.clients[client_id] = _Client(client_id, pid)
            client.conns += 1
        if request[1] != "hello":
            self._reply(ch, client, self._dispatch_special(client, request[1], request[2]))
        return client

    def _serve(self, ch: _wire.Channel, client: _Client) -> None:
        """The hot loop: one request, one reply, until the client goes away.

        Kept short on purpose: each request wakes this thread on a cold cache, so every
        extra line shows in the round trip.  Plain results (numbers, strings, None) skip
        the reply pickler's proxy bookkeeping.
        """
        objects = self.objects
        recv, send = ch.recv_frame, ch.send_frame
        pdumps = pickle.dumps
        simple = _SIMPLE
        entry: _Entry | None
        res: Any
        reply: Any
        while True:
            data = recv()
            try:
                ident, name, args, kwds = ploads(data)
            except Exception as exc:
                raise FrameError(f"malformed request ({type(exc).__name__}: {exc})") from None
            if ident is None:
                reply = self._dispatch_special(client, name, args)
                if reply is _NO_REPLY:
                    continue
            else:
                entry = objects.get(ident)
                if entry is None or name not in entry.exposed:
                    reply = self._fallback(entry, ident, name, args, kwds)
                else:
                    try:
                        if kwds:
                            res = getattr(entry.obj, name)(*args, **kwds)
                        else:
                            res = getattr(entry.obj, name)(*args)
                    except Exception as exc:
                        tb = None if isinstance(exc, _QUIET) else traceback.format_exc()
                        reply = (ERROR, (exc, tb))
                    else:
                        m2t = entry.method_to_typeid
                        if m2t is None and type(res) in simple:
                            send(pdumps((RETURN, res), 5))
                            entry = res = None
                            continue
                        typeid = m2t.get(name) if m2t else None
                        if typeid:
                            reply = (PROXY, self._register_result(client, typeid, res))
                        else:
                            reply = (RETURN, res)
            self._reply(ch, client, reply)
            # Drop this request's objects now, not at the next request: a referent whose
            # last reference goes must not be kept alive by an idle handler thread.
            entry = res = reply = kwds = None
            args = ()

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
            if name == "incref":
                self._incref(client, args, strict=True)
                return (RETURN, None)
            if name == "create":
                typeid, cargs, ckwds = args
                return (RETURN, self.create(client, typeid, *cargs, **ckwds))
            if name == "get_methods":
                return (RETURN, self.objects[args[0]].names)
            if name == "dummy":
                return (RETURN, None)
            if name == "number_of_objects":
                return (RETURN, len(self.objects))
            if name == "debug_info":
                return (RETURN, self.debug_info())
            if name == "shutdown":
                self.stop()
                return (RETURN, None)
            if name == "hello":
                return _NO_REPLY
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

    def _disconnect(self, client: _Client) -> None:
        dead = []
        with self.mutex:
            client.conns -= 1
            if client.conns > 0:
                return
            self.clients.pop(client.id, None)
            for ident, count in client.refs.items():
                entry = self.objects.get(ident)
                if entry is not None:
                    entry.refcount -= count
                    if entry.refcount <= 0:
                        dead.append(self.objects.pop(ident))
            client.refs.clear()
        del dead

    # -- what proxies living inside this process use (see _proxy.LocalServer) ----------------

    def local_incref(self, ident: int) -> None:
        self._incref(self._local, (ident,), strict=False)

    def local_decref(self, ident: int) -> None:
        if not self.stop_event.is_set():
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


def _decode(data: bytes) -> tuple[Any, str, tuple[Any, ...], dict[str, Any] | None]:
    """A request tuple, or :class:`~procly.errors.FrameError` for anything else."""
    try:
        request = loads(data)
        ident, name, args, kwds = request
        if not isinstance(name, str) or not isinstance(args, tuple):
            raise TypeError("not a request")
    except Exception as exc:
        raise FrameError(f"malformed request ({type(exc).__name__}: {exc})") from None
    return ident, name, args, kwds
