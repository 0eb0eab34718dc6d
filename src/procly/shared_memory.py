"""Drop-in for :mod:`multiprocessing.shared_memory`, plus shared NumPy arrays.

Re-exports only; the implementation lives in :mod:`procly._shm`.
"""

from __future__ import annotations

from ._shm._segment import SharedMemory as SharedMemory
from ._shm._shareable_list import ShareableList as ShareableList
from ._shm._shareable_list import UnsupportedItemError as UnsupportedItemError

__all__ = ("ShareableList", "SharedMemory", "UnsupportedItemError")
