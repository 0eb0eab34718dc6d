"""Drop-in for :mod:`multiprocessing.util`: logging, finalizers, after-fork hooks."""

from __future__ import annotations

from ._proc._afterfork import register_after_fork as register_after_fork
from ._proc._finalize import Finalize as Finalize
from ._proc._finalize import is_exiting as is_exiting
from ._proc._logger import DEFAULT_LOGGING_FORMAT as DEFAULT_LOGGING_FORMAT
from ._proc._logger import LOGGER_NAME as LOGGER_NAME
from ._proc._logger import SUBDEBUG as SUBDEBUG
from ._proc._logger import SUBWARNING as SUBWARNING
from ._proc._logger import debug as debug
from ._proc._logger import get_logger as get_logger
from ._proc._logger import info as info
from ._proc._logger import log_to_stderr as log_to_stderr
from ._proc._logger import sub_debug as sub_debug
from ._proc._logger import sub_warning as sub_warning

__all__ = (
    "DEFAULT_LOGGING_FORMAT",
    "LOGGER_NAME",
    "SUBDEBUG",
    "SUBWARNING",
    "Finalize",
    "debug",
    "get_logger",
    "info",
    "is_exiting",
    "log_to_stderr",
    "register_after_fork",
    "sub_debug",
    "sub_warning",
)
