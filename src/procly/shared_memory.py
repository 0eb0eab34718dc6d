"""Drop-in for :mod:`multiprocessing.shared_memory`, plus shared NumPy arrays.

Re-exports only; the implementation lives in :mod:`procly._shm`.  The NumPy helpers
(:func:`ndarray`, :func:`share`, :class:`SharedNDArray`) import NumPy on first use; without
it they raise :class:`ImportError` naming the ``procly[numpy]`` extra.
"""

from __future__ import annotations

from typing import Any

from ._shm._segment import SharedMemory as SharedMemory
from ._shm._shareable_list import ShareableList as ShareableList
from ._shm._shareable_list import UnsupportedItemError as UnsupportedItemError

__all__ = (
    "ShareableList",
    "SharedMemory",
    "UnsupportedItemError",
    "ndarray",
    "share",
)


def ndarray(shape: int | tuple[int, ...], dtype: Any = float, order: str = "C") -> Any:
    """A zero-filled NumPy array in shared memory that pickles as a handle (O(1)).

    See :func:`procly._shm._ndarray.ndarray`.
    """
    from ._shm._ndarray import ndarray as _ndarray

    return _ndarray(shape, dtype, order)


def share(array: Any) -> Any:
    """A copy of *array* in shared memory that pickles as a handle (O(1))."""
    from ._shm._ndarray import share as _share

    return _share(array)


def __getattr__(name: str) -> Any:
    if name == "SharedNDArray":  # lazily: importing it imports NumPy
        from ._shm._ndarray import SharedNDArray

        return SharedNDArray
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
