"""Drop-in for :mod:`multiprocessing.reduction`: re-exports only (see ``procly._proc._handles``)."""

from __future__ import annotations

from ._proc._handles import DupFd as DupFd
from ._proc._handles import dump as dump
from ._proc._handles import recv_handle as recv_handle
from ._proc._handles import recvfds as recvfds
from ._proc._handles import send_handle as send_handle
from ._proc._handles import sendfds as sendfds
from ._serial._pickler import ProcPickler as ForkingPickler
from ._serial._pickler import register as register

#: Descriptors can be sent between processes on this platform (stdlib name).
HAVE_SEND_HANDLE = True

__all__ = (
    "HAVE_SEND_HANDLE",
    "DupFd",
    "ForkingPickler",
    "dump",
    "recv_handle",
    "recvfds",
    "register",
    "send_handle",
    "sendfds",
)
