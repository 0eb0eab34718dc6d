"""The manager server: an accept loop, and one thread per client connection (layer 3).

::

    server process
    +--------------------------------------------------------------------------------+
    |  accept loop (serve / serve_forever's thread)                                  |
    |    epoll/poll: listening socket + wake-up pair                                 |
    |    accept() -> start a connection thread (at most MAX_PENDING still in their   |
    |                handshake; more are closed at once)                             |
    |                                                                                |
    |  connection thread, one per client connection (= one per client thread)       |
    |    1. HMAC handshake under a total deadline: nothing unpickled before          |
    |    2. the client's "hello" (its process id for reference counting)            |
    |    3. loop: frame -> (id, method, args, kwds) -> call the referent -> reply    |
    |                                                                                |
    |  ObjectTable (_objects.py): objects, reference counts per client process       |
    +--------------------------------------------------------------------------------+

* **accept loop**: only accepts and starts threads, so a client that stalls in the
  handshake, a wrong key or a flood of connections never delays anyone else.  Past
  :data:`MAX_PENDING` connections still in their handshake, new ones are closed at once
  (and logged); established clients are unaffected.  ``EMFILE`` and friends are logged and
  retried after a short pause.
* **connection thread**: a method that blocks (``Queue.get``, ``Lock.acquire``) blocks only
  this thread.  A malformed frame (bad length, not a pickle, not a request) is logged and
  closes this connection only.  (A single event loop answering the non-blocking requests
  was tried and measured slower: one more system call per request than a thread blocked
  in ``recv``, which waits and reads at once.)

Security: a manager trusts every authenticated client completely -- requests are pickles,
and unpickling runs code.  The authkey is the only protection, so serve on loopback (or a
Unix socket, the default) unless the authkey is secret and the network trusted.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import sys
import tempfile
import threading
from typing import Any

from .._errors import AuthenticationError, FrameError
from .._proc._logger import get_logger
from . import _proxy, _wire
from ._objects import ObjectTable, Registry, Request, _Client, decode

__all__ = ("HANDSHAKE_TIMEOUT", "MAX_PENDING", "Server", "bind")

#: Seconds a new connection has to complete the authkey handshake.
HANDSHAKE_TIMEOUT = 5.0
#: Connections allowed in their handshake at once; more are closed immediately.
MAX_PENDING = 256


class _Poller:
    """epoll where there is one (Linux), else poll(); both take the same calls."""

    def __init__(self) -> None:
        self._p: Any = select.epoll() if hasattr(select, "epoll") else select.poll()

    def register(self, fd: int, mask: int) -> None:
        self._p.register(fd, mask)

    def unregister(self, fd: int) -> None:
        try:
            self._p.unregister(fd)
        except (OSError, KeyError):
            pass

    def poll(self) -> list[tuple[int, int]]:
        result: list[tuple[int, int]] = self._p.poll()
        return result

    def close(self) -> None:
        if hasattr(self._p, "close"):
            self._p.close()


_READ = select.POLLIN


class _Conn:
    __slots__ = ("ch", "client")

    def __init__(self, ch: _wire.Channel, client: _Client) -> None:
        self.ch, self.client = ch, client


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


class Server(ObjectTable):
    """Serves the objects of one manager (``BaseManager.get_server()`` returns one).

    Raises :class:`TypeError` for a non-bytes *authkey*, :class:`ValueError` for an unknown
    serializer, :class:`OSError` if the address cannot be bound.
    """

    __module__ = "procly.managers"

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
        super().__init__(registry)
        self.authkey = bytes(authkey)
        self.ctx = ctx
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self.listener, self.address, self._tmpdir = bind(address)
        self.stop_event = threading.Event()
        self._pending = 0
        self._channels: set[_wire.Channel] = set()
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
        _proxy.CLIENT.sending.current = self
        try:
            self._loop()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def stop(self) -> None:
        """Make :meth:`serve` return (thread-safe, idempotent)."""
        self.stop_event.set()
        self._wake()

    def _wake(self) -> None:
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
        for ch in channels:  # wake connection threads blocked in recv
            try:
                ch.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ch.close()
        del dead  # referents go now, outside the mutex (their __del__ may call back)
        self._wake_r.close()
        self._wake_w.close()

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        poller = _Poller()
        listen_fd, wake_fd = self.listener.fileno(), self._wake_r.fileno()
        poller.register(listen_fd, _READ)
        poller.register(wake_fd, _READ)
        try:
            while not self.stop_event.is_set():
                for fd, _ in poller.poll():
                    if fd == listen_fd:
                        self._accept_one()
                    elif fd == wake_fd:
                        self._drain_wake()
        finally:
            poller.close()

    def _drain_wake(self) -> None:
        try:
            self._wake_r.recv(4096)
        except OSError:
            pass

    def _thread_serve(self, conn: _Conn, first: Request | None) -> None:
        """Serve one connection, blocking, until the client goes away."""
        _proxy.CLIENT.sending.current = self
        ch, client = conn.ch, conn.client
        try:
            if first is not None:
                self.answer(ch, client, first)
            self.serve_channel(ch, client)
        except FrameError as exc:
            self.log.error("manager server: closing a connection: %s", exc)
        except (EOFError, OSError):
            pass
        except Exception as exc:
            self.log.error("manager server: closing a connection: %s: %s", type(exc).__name__, exc)
        finally:
            self._close_conn(conn)

    def _close_conn(self, conn: _Conn) -> None:
        with self.mutex:
            known = conn.ch in self._channels
            self._channels.discard(conn.ch)
        conn.ch.close()
        if known:
            self.disconnect(conn.client)

    # -- new connections ---------------------------------------------------------------------

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
            threading.Thread(target=self._handshake, args=(sock,), daemon=True,
                             name="procly-manager-handshake").start()  # fmt: skip
        except RuntimeError as exc:  # cannot start a thread: refuse this connection only
            with self.mutex:
                self._pending -= 1
            self.log.error("manager server: cannot serve a new connection: %s", exc)
            sock.close()

    def _handshake(self, sock: socket.socket) -> None:
        """Authenticate, read the hello (both under the handshake deadline), then serve."""
        try:
            try:
                ch = _wire.accepted(sock, self.authkey, self.handshake_timeout)
                ch.deadline = _deadline(self.handshake_timeout)
                hello = ch.take_frame()
                while hello is None:
                    ch.fill_once()
                    hello = ch.take_frame()
                ch.deadline = None
                ch.sock.settimeout(None)
            finally:
                with self.mutex:
                    self._pending -= 1
        except FrameError as exc:  # garbage: a malformed or oversized frame
            self.log.error("manager server: closing a connection: %s", exc)
            sock.close()
            return
        except Exception as exc:
            # A wrong key is worth a warning; a peer that hung up or timed out (port
            # scanners, clients killed while connecting) only an info record.
            level = logging.WARNING if isinstance(exc, AuthenticationError) else logging.INFO
            self.log.log(level, "manager server: handshake failed: %s: %s", type(exc).__name__, exc)
            sock.close()
            return
        try:
            client_id, pid, first = _parse_hello(hello, ch)
        except FrameError as exc:
            self.log.error("manager server: closing a connection: %s", exc)
            ch.close()
            return
        conn = _Conn(ch, self.connect_client(client_id, pid))
        with self.mutex:
            self._channels.add(ch)
        self._thread_serve(conn, first)


def _deadline(timeout: float) -> float:
    import time

    return time.monotonic() + timeout


def _parse_hello(frame: Any, ch: _wire.Channel) -> tuple[Any, int | None, Request | None]:
    """``(client id, pid, None)`` for a hello; for any other first frame an anonymous id and
    the request in it, to be answered first.  Raises FrameError for a malformed frame."""
    if frame is _wire.BIG:
        return ("anonymous", id(ch)), None, None
    request = decode(frame)
    ident, name, args, _kwds = request
    if ident is None and name == "hello" and isinstance(args, tuple) and len(args) == 2:
        return args[0], args[1], None
    return ("anonymous", id(ch)), None, request
