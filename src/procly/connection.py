"""Drop-in for :mod:`multiprocessing.connection`: re-exports only (see ``procly._proc``)."""

from __future__ import annotations

from ._errors import AuthenticationError as AuthenticationError
from ._errors import BufferTooShort as BufferTooShort
from ._proc._auth import answer_challenge as answer_challenge
from ._proc._auth import deliver_challenge as deliver_challenge
from ._proc._connection import Connection as Connection
from ._proc._connection import Pipe as Pipe
from ._proc._connection import wait as wait
from ._proc._listener import Client as Client
from ._proc._listener import Listener as Listener
from ._proc._listener import address_type as address_type

__all__ = (
    "AuthenticationError",
    "BufferTooShort",
    "Client",
    "Connection",
    "Listener",
    "Pipe",
    "address_type",
    "answer_challenge",
    "deliver_challenge",
    "wait",
)
