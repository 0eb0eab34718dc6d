"""The errors that subclass :class:`concurrent.futures.BrokenExecutor` (layer 0).

They live apart from :mod:`procly._errors` only so that ``import procly`` does not import
:mod:`concurrent.futures` (about 12 ms of logging and traceback that every spawned child
would pay).  They follow the same rules: public home :mod:`procly.errors`, and each also
subclasses what the standard library raised, so existing ``except`` clauses match.
"""

from __future__ import annotations

from concurrent.futures import BrokenExecutor

from ._errors import ProcessError, WorkerError

__all__ = ("BrokenProcessPool", "WorkerCrashedError")


class BrokenProcessPool(BrokenExecutor, ProcessError):
    """Raised when an executor or pool can no longer be used at all."""


class WorkerCrashedError(WorkerError, BrokenProcessPool):
    """Raised for the one task whose worker died while running it.

    Carries ``pid``, ``exitcode`` and ``signal_name``; every other task still completes.
    """

    def __init__(
        self, message: str, *, pid: int | None = None, exitcode: int | None = None
    ) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    @property
    def signal_name(self) -> str | None:
        """The name of the signal that killed the worker (``"SIGKILL"``), or ``None``."""
        import signal

        if self.exitcode is None or self.exitcode >= 0:
            return None
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_worker_crashed, (str(self), self.pid, self.exitcode))


def _rebuild_worker_crashed(message: str, pid: int | None, exitcode: int | None) -> WorkerCrashedError:
    return WorkerCrashedError(message, pid=pid, exitcode=exitcode)


for _cls in (BrokenProcessPool, WorkerCrashedError):
    _cls.__module__ = "procly.errors"
_rebuild_worker_crashed.__module__ = "procly.errors"
