"""Listener/Client: connections between processes that were not started together (layer 1).

::

    server process                          client process
    Listener(address) ── bind/listen
    accept() ◀────────── connect ─────────── Client(address)
      [authkey: mutual HMAC handshake, procly._proc._auth, before any unpickling]
      └─▶ Connection ◀══════ frames ══════▶ Connection

* **Listener** owns a listening socket (``AF_UNIX`` path or Linux abstract name, or TCP); each
  ``accept`` returns a :class:`~procly.connection.Connection` and records ``last_accepted``.
* **Client** connects and returns a :class:`~procly.connection.Connection`.
* With ``authkey`` both sides authenticate each other before anything else; a wrong key
  raises :class:`~procly.AuthenticationError` on both ends.  ``authkey=None`` means no
  authentication, as the standard library documents.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import weakref
from typing import Any, cast

from ._auth import answer_challenge, deliver_challenge
from ._connection import Connection

__all__ = ("Client", "Listener", "address_type")

FAMILIES = ("AF_INET", "AF_UNIX")
Address = Any  # str/bytes (AF_UNIX) or (host, port) (AF_INET)


def address_type(address: Address) -> str:
    """The family name an address belongs to (stdlib name).

    Raises :class:`ValueError` for an address of no known family.
    """
    if isinstance(address, tuple):
        return "AF_INET"
    if isinstance(address, str) and address.startswith("\\\\"):
        return "AF_PIPE"
    if isinstance(address, (str, bytes)):
        return "AF_UNIX"
    raise ValueError(f"address type of {address!r} unrecognized")


def _validate_family(family: str) -> int:
    if family not in FAMILIES or not hasattr(socket, family):
        raise ValueError(f"Family {family} is not recognized.")
    return int(getattr(socket, family))


def _check_authkey(authkey: object) -> bytes | None:
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")
    return authkey


def _is_abstract(address: Address) -> bool:
    return isinstance(address, (str, bytes)) and address[:1] in ("\0", b"\0")


class Listener:
    """A bound, listening socket that accepts connections (stdlib name).

    ``Listener(address=None, family=None, backlog=1, authkey=None)``: *family* defaults from
    *address*; with no address, a fresh ``AF_UNIX`` path in a private (0700) temporary
    directory, removed by :meth:`close`.  Raises :class:`ValueError` for an unknown family,
    :class:`TypeError` for an *authkey* that is not bytes, :class:`OSError` from ``bind``.
    """

    def __init__(
        self,
        address: Address | None = None,
        family: str | None = None,
        backlog: int = 1,
        authkey: bytes | None = None,
    ) -> None:
        self._authkey = _check_authkey(authkey)
        family = family or (address_type(address) if address is not None else "AF_UNIX")
        fam = _validate_family(family)
        tmpdir: str | None = None
        if address is None:
            if family == "AF_UNIX":
                tmpdir = tempfile.mkdtemp(prefix="procly-listener-")
                address = os.path.join(tmpdir, "socket")
            else:
                address = ("127.0.0.1", 0)
        self._family = family
        sock = socket.socket(fam, socket.SOCK_STREAM)
        try:
            if fam != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        self._sock: socket.socket | None = sock
        self._address: Address = address if fam == socket.AF_UNIX else sock.getsockname()
        self._last_accepted: Address | None = None
        unlink: str | None = None
        if fam == socket.AF_UNIX and not _is_abstract(address):
            unlink = os.fsdecode(cast(Any, address))
        self._cleanup = weakref.finalize(self, _cleanup, sock, unlink, tmpdir)

    @property
    def address(self) -> Address:
        """The address this listener is bound to."""
        return self._address

    @property
    def last_accepted(self) -> Address | None:
        """The address the last accepted connection came from (``None`` until one)."""
        return self._last_accepted

    def accept(self) -> Connection:
        """Accept a connection and return it (authenticated first when there is an authkey).

        Raises :class:`OSError` ``"listener is closed"`` after :meth:`close`, and
        :class:`~procly.AuthenticationError` if the peer fails the handshake (its
        connection is closed; the listener stays usable).
        """
        if self._sock is None:
            raise OSError("listener is closed")
        sock, self._last_accepted = self._sock.accept()
        sock.setblocking(True)
        conn = Connection(sock.detach())
        if self._authkey is not None:
            try:
                deliver_challenge(conn, self._authkey)
                answer_challenge(conn, self._authkey)
            except BaseException:
                conn.close()
                raise
        return conn

    def close(self) -> None:
        """Close the listening socket and remove its filesystem path (idempotent)."""
        if self._sock is not None:
            self._sock = None
            self._cleanup()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<procly.connection.Listener {self._family} {self._address!r}>"


Listener.__module__ = "procly.connection"


def _cleanup(sock: socket.socket, path: str | None, tmpdir: str | None) -> None:
    sock.close()
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)


def Client(
    address: Address, family: str | None = None, authkey: bytes | None = None
) -> Connection:
    """Connect to a :class:`Listener` at *address* and return the connection (stdlib name).

    Raises :class:`ValueError` for an unknown family, :class:`TypeError` for an *authkey*
    that is not bytes, :class:`OSError` (``ConnectionRefusedError``, ``FileNotFoundError``)
    when nobody listens, and :class:`~procly.AuthenticationError` when the handshake fails.
    """
    key = _check_authkey(authkey)
    fam = _validate_family(family or address_type(address))
    sock = socket.socket(fam, socket.SOCK_STREAM)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    conn = Connection(sock.detach())
    if key is not None:
        try:
            answer_challenge(conn, key)
            deliver_challenge(conn, key)
        except BaseException:
            conn.close()
            raise
    return conn
