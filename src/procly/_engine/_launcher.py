"""The local backend's launcher: workers are procly processes of the pool's context."""

from __future__ import annotations

from typing import Any

from ._channel import ChannelEnd
from ._supervisor import WorkerProcess
from ._worker import WorkerSetup, worker_main

__all__ = ("ProcessLauncher",)


class ProcessLauncher:
    """Starts each worker as ``context.Process(target=worker_main)``.

    Workers are *not* daemonic (unlike the standard library's), so that a task may use a
    pool of its own (nesting is limited by :data:`~._worker.MAX_POOL_DEPTH`).  They still
    never outlive their pool: the engine kills them when it ends, at interpreter exit
    (before procly joins non-daemonic children), and procly's lifeline ends them if the
    parent is killed.
    """

    def __init__(self, context: Any, name: str = "procly-worker") -> None:
        self._context = context
        self._name = name
        self._count = 0

    def launch(self, end: ChannelEnd, setup: WorkerSetup) -> WorkerProcess:
        self._count += 1
        proc = self._context.Process(
            target=worker_main,
            args=(end, setup),
            name=f"{self._name}-{self._count}",
            daemon=False,
        )
        proc.start()
        return proc  # type: ignore[no-any-return]
