"""Drop-in for :mod:`multiprocessing.process`: process objects and who-am-I functions."""

from __future__ import annotations

from ._proc._process import AuthenticationString as AuthenticationString
from ._proc._process import BaseProcess as BaseProcess
from ._proc._process import active_children as active_children
from ._proc._process import current_process as current_process
from ._proc._process import parent_process as parent_process

__all__ = (
    "AuthenticationString",
    "BaseProcess",
    "active_children",
    "current_process",
    "parent_process",
)
