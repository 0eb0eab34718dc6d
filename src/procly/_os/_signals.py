"""Signal names and delivery helpers (layer 0: standard library only)."""

from __future__ import annotations

import os
import signal

__all__ = ("exitcode_name", "send_signal", "signal_name")


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15; ``"signal 99"`` for numbers the platform does not name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exitcode_name(exitcode: int | None) -> str:
    """How an exit code reads to a human: ``"SIGKILL"`` for -9, ``"EXIT(3)"`` for 3, ...

    A negative exit code is the number of the signal that killed the process, which is the
    convention of :attr:`multiprocessing.Process.exitcode`.
    """
    if exitcode is None:
        return "running"
    if exitcode < 0:
        return signal_name(-exitcode)
    return f"EXIT({exitcode})"


def send_signal(pid: int, signum: int) -> bool:
    """Send *signum* to *pid*; ``False`` if the process no longer exists.

    Raises :class:`PermissionError` if *pid* belongs to someone else (a pid that was reused
    after the process had been reaped; callers only signal unreaped children).
    """
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True
