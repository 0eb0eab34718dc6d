"""HMAC challenge-response on a shared ``authkey`` (layer 1).

::

    Listener.accept() side                     Client() side
    deliver_challenge ──#CHALLENGE#{sha256}nonce──▶ answer_challenge
                      ◀──{sha256}HMAC(key, nonce)──
                      ──#WELCOME# / #FAILURE#─────▶
    answer_challenge  ◀──#CHALLENGE#{sha256}nonce── deliver_challenge
                      ──{sha256}HMAC(key, nonce)──▶
                      ◀──#WELCOME# / #FAILURE#─────

* Both sides prove they know the key (mutual authentication), each with a fresh 32-byte nonce
  from :mod:`secrets`; digests are compared in constant time.
* Only ``send_bytes``/``recv_bytes(256)`` are used: nothing is unpickled before both sides
  are authenticated, and an oversized message is refused without being read.
* A failure raises :class:`~procly.AuthenticationError` on both ends (the failing side tells
  the other with ``#FAILURE#``).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from .._errors import AuthenticationError

__all__ = ("answer_challenge", "deliver_challenge")

CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
#: Digests an answering side accepts; the delivering side always asks for the first.
DIGESTS = ("sha256", "sha384", "sha512")
NONCE_LENGTH = 32
MAX_MESSAGE = 256


def _check_key(authkey: object) -> bytes:
    if not isinstance(authkey, bytes):
        raise ValueError(f"authkey must be bytes, not {type(authkey).__name__}")
    return authkey


def _split_digest(message: bytes) -> tuple[str, bytes]:
    """``b"{name}payload"`` -> ``(name, payload)``; raises AuthenticationError otherwise."""
    if message.startswith(b"{"):
        end = message.find(b"}", 1, 20)
        if end > 0:
            name = message[1:end].decode("ascii", "replace")
            if name in DIGESTS:
                return name, message[end + 1 :]
    raise AuthenticationError(f"unsupported or missing digest in {message[:20]!r}")


def deliver_challenge(connection: Any, authkey: bytes) -> None:
    """Challenge the peer to prove it knows *authkey* (stdlib name).

    Raises :class:`~procly.AuthenticationError` if its answer is wrong (after telling it so),
    :class:`ValueError` if *authkey* is not bytes.
    """
    key = _check_key(authkey)
    name = DIGESTS[0]
    nonce = b"{" + name.encode() + b"}" + secrets.token_bytes(NONCE_LENGTH)
    connection.send_bytes(CHALLENGE + nonce)
    response = connection.recv_bytes(MAX_MESSAGE)
    expected = b"{" + name.encode() + b"}" + hmac.digest(key, nonce, name)
    if hmac.compare_digest(response, expected):
        connection.send_bytes(WELCOME)
        return
    connection.send_bytes(FAILURE)
    raise AuthenticationError("digest received was wrong")


def answer_challenge(connection: Any, authkey: bytes) -> None:
    """Answer the peer's challenge with an HMAC of its nonce under *authkey* (stdlib name).

    Raises :class:`~procly.AuthenticationError` for a malformed challenge or when the peer
    rejects the answer, :class:`ValueError` if *authkey* is not bytes.
    """
    key = _check_key(authkey)
    message = connection.recv_bytes(MAX_MESSAGE)
    if not message.startswith(CHALLENGE):
        raise AuthenticationError(f"protocol error: expected a challenge, got {message[:20]!r}")
    nonce = message[len(CHALLENGE) :]
    name, _ = _split_digest(nonce)
    connection.send_bytes(b"{" + name.encode() + b"}" + hmac.digest(key, nonce, name))
    response = connection.recv_bytes(MAX_MESSAGE)
    if response != WELCOME:
        raise AuthenticationError("digest sent was rejected")
