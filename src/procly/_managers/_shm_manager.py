"""SharedMemoryManager: shared-memory blocks whose lifetime a manager process owns (layer 3).

::

    client process                                  manager server process
    SharedMemory(size) / ShareableList(seq)  --->   track_segment(name): remembered
      (created here, used directly: no proxy)       shutdown: every tracked name unlinked

* The blocks themselves are ordinary :class:`procly.shared_memory.SharedMemory` objects
  created by the calling process: reads and writes never go through the server.
* The server only remembers their names and unlinks them all when the manager shuts down
  (``with SharedMemoryManager() as smm:`` frees everything at the end of the block), even
  when the processes that created them are gone.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .._shm._segment import SharedMemory, shm_unlink
from .._shm._shareable_list import ShareableList
from ._base import BaseManager
from ._objects import _Client
from ._server import Server

__all__ = ("SharedMemoryManager", "SharedMemoryServer")


class SharedMemoryServer(Server):
    """A :class:`~procly.managers.Server` that also tracks shared-memory segment names."""

    __module__ = "procly.managers"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.segment_names: list[str] = []

    def request_track_segment(self, client: _Client, segment_name: str) -> None:
        with self.mutex:
            self.segment_names.append(segment_name)

    def request_release_segment(self, client: _Client, segment_name: str) -> None:
        """Unlink one tracked segment now.  Raises :class:`ValueError` for an unknown name."""
        with self.mutex:
            self.segment_names.remove(segment_name)
        with contextlib.suppress(FileNotFoundError):
            shm_unlink(segment_name)

    def request_list_segments(self, client: _Client) -> list[str]:
        with self.mutex:
            return list(self.segment_names)

    def close(self) -> None:
        with self.mutex:
            names, self.segment_names = self.segment_names, []
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                shm_unlink(name)
        super().close()


class SharedMemoryManager(BaseManager):
    """A manager whose ``SharedMemory``/``ShareableList`` blocks are freed at its shutdown.

    Drop-in for :class:`multiprocessing.managers.SharedMemoryManager`; raises
    :class:`~procly.ProcessError` when used before ``start()``/``connect()``.
    """

    __module__ = "procly.managers"
    _Server = SharedMemoryServer

    def SharedMemory(self, size: int) -> SharedMemory:
        """A new block of *size* bytes, unlinked when the manager shuts down."""
        self._check_started()
        segment = SharedMemory(None, create=True, size=size)
        try:
            self._request("track_segment", segment.name)
        except BaseException:
            segment.unlink()
            raise
        return segment

    def ShareableList(self, sequence: Any) -> ShareableList:
        """A new :class:`~procly.shared_memory.ShareableList`, unlinked at shutdown."""
        self._check_started()
        shareable = ShareableList(sequence)
        try:
            self._request("track_segment", shareable.shm.name)
        except BaseException:
            shareable.shm.unlink()
            raise
        return shareable

    def _check_started(self) -> None:
        from .._errors import ProcessError
        from ._base import State

        if self._state.value != State.STARTED:
            raise ProcessError("server not yet started: call start() or connect() first")
