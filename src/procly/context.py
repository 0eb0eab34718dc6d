"""Drop-in for :mod:`multiprocessing.context`: contexts and their process classes."""

from __future__ import annotations

from ._contexts import BaseContext as BaseContext
from ._contexts import DefaultContext as DefaultContext
from ._contexts import ForkContext as ForkContext
from ._contexts import ForkProcess as ForkProcess
from ._contexts import ForkServerContext as ForkServerContext
from ._contexts import ForkServerProcess as ForkServerProcess
from ._contexts import Process as Process
from ._contexts import SpawnContext as SpawnContext
from ._contexts import SpawnProcess as SpawnProcess
from ._errors import AuthenticationError as AuthenticationError
from ._errors import BufferTooShort as BufferTooShort
from ._errors import ProcessError as ProcessError
from ._errors import TimeoutError as TimeoutError
from ._proc._spawning import assert_spawning as assert_spawning

__all__ = (
    "AuthenticationError",
    "BaseContext",
    "BufferTooShort",
    "DefaultContext",
    "ForkContext",
    "ForkProcess",
    "ForkServerContext",
    "ForkServerProcess",
    "Process",
    "ProcessError",
    "SpawnContext",
    "SpawnProcess",
    "TimeoutError",
    "assert_spawning",
)
