"""procly's logger (``multiprocessing.util.get_logger`` / ``log_to_stderr``), layer 1.

:mod:`logging` is imported on first use only: a spawned child never pays for it unless the
program logs.  The logger does not propagate to the root logger, like the standard library's,
so ``log_to_stderr`` does not print every record twice.
"""

from __future__ import annotations

import threading

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms

if TYPE_CHECKING:
    import logging
    from typing import Any

__all__ = (
    "DEFAULT_LOGGING_FORMAT",
    "LOGGER_NAME",
    "SUBDEBUG",
    "SUBWARNING",
    "debug",
    "get_logger",
    "info",
    "log_to_stderr",
    "sub_debug",
    "sub_warning",
)

LOGGER_NAME = "procly"
DEFAULT_LOGGING_FORMAT = "[%(levelname)s/%(processName)s] %(message)s"
SUBDEBUG = 5
SUBWARNING = 25


class _LoggerState:
    """The one owner of the configured logger (``None`` until first use)."""

    def __init__(self) -> None:
        self.logger: logging.Logger | None = None
        self.lock = threading.Lock()
        self.stderr_handler: logging.Handler | None = None


_STATE = _LoggerState()


def get_logger() -> logging.Logger:
    """The logger procly reports to (created, without handlers, on first use)."""
    logger = _STATE.logger
    if logger is not None:
        return logger
    import logging

    with _STATE.lock:
        if _STATE.logger is None:
            logging.addLevelName(SUBDEBUG, "SUBDEBUG")
            logging.addLevelName(SUBWARNING, "SUBWARNING")
            new = logging.getLogger(LOGGER_NAME)
            new.propagate = False
            _STATE.logger = new
        return _STATE.logger


def log_to_stderr(level: int | str | None = None) -> logging.Logger:
    """Make procly's logger print to stderr (once, however often it is called) and, given
    *level*, set its level; returns the logger."""
    import logging

    logger = get_logger()
    with _STATE.lock:
        if _STATE.stderr_handler is None:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
            logger.addHandler(handler)
            _STATE.stderr_handler = handler
    if level is not None:
        logger.setLevel(level)
    return logger


def _log(level: int, msg: str, *args: Any) -> None:
    logger = _STATE.logger
    if logger is not None:
        logger.log(level, msg, *args)


def sub_debug(msg: str, *args: Any) -> None:
    """Log at level SUBDEBUG (5) if a logger was created."""
    _log(SUBDEBUG, msg, *args)


def debug(msg: str, *args: Any) -> None:
    """Log at level DEBUG if a logger was created."""
    _log(10, msg, *args)


def info(msg: str, *args: Any) -> None:
    """Log at level INFO if a logger was created."""
    _log(20, msg, *args)


def sub_warning(msg: str, *args: Any) -> None:
    """Log at level SUBWARNING (25) if a logger was created."""
    _log(SUBWARNING, msg, *args)
