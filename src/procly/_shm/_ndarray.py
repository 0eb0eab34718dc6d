"""NumPy arrays in shared memory that pickle as a handle, not as their data (layer 2).

::

    process A                                   process B (child, pipe/queue/pool peer)
    a = ndarray((n,), "f8")                     b = pickle.loads(...)
      SharedNDArray over SharedMemory S --pickle: (S's name + hold, dtype, shape,
      (tracked, reference counted)        strides, offset) ~ 200 bytes--> attach S, view
      a[i] = x   <------------------- the same pages ------------------->   b[i] == x

* **The creator** makes an unpinned tracked segment: it is unlinked as soon as no process
  has an array on it and no pickle of one is in flight (the tracker hold), also after
  SIGKILL.  Nothing accumulates in a long-lived creator.
* **Any process** that unpickles a handle attaches the segment; its arrays keep the
  mapping (and their tracker *use*) alive until the last one is collected.
* Slices and views stay shared and pickle as handles too (with their offset and strides);
  arrays *computed* from a shared one (``a + 1``) are ordinary arrays in private memory.

NumPy is optional: this module is imported only when the helpers are used.
"""

from __future__ import annotations

import math
from typing import Any

try:
    import numpy as np
except ImportError as exc:  # pragma: no cover - numpy is installed for the tests
    raise ImportError(
        "procly.shared_memory.ndarray/share need NumPy: pip install 'procly[numpy]'"
    ) from exc

from ._segment import SharedMemory

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # pragma: no cover - NumPy < 2
    byte_bounds = np.byte_bounds  # type: ignore[attr-defined]

__all__ = ("SharedNDArray", "ndarray", "share")


class SharedNDArray(np.ndarray):  # type: ignore[type-arg]
    """A NumPy array whose memory is a shared segment; pickling sends only a handle.

    Behaves exactly like :class:`numpy.ndarray` otherwise.  ``.shm`` is the
    :class:`~procly.shared_memory.SharedMemory` behind it (``None`` for an array computed
    from a shared one, which lives in private memory and pickles by value).
    """

    shm: SharedMemory | None

    def __array_finalize__(self, obj: Any) -> None:
        self.shm = getattr(obj, "shm", None)

    def _in_segment(self) -> bool:
        shm = self.shm
        if shm is None or shm._mmap is None:
            return False
        start = np.frombuffer(shm._mmap, dtype=np.uint8, count=0).__array_interface__["data"][0]
        lo, hi = byte_bounds(self)
        return bool(start <= lo and hi <= start + shm.size)

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        # results of ufuncs live in fresh private memory: hand back plain arrays
        out = np.ndarray.__array_wrap__(self, arr, context, return_scalar)
        if isinstance(out, SharedNDArray) and not out._in_segment():
            plain = out.view(np.ndarray)
            return plain[()] if return_scalar and plain.ndim == 0 else plain
        return out

    def __reduce_ex__(self, protocol: Any) -> Any:
        if not self._in_segment():
            return np.asarray(self).copy().__reduce_ex__(protocol)
        assert self.shm is not None
        start = np.frombuffer(self.shm._mmap, dtype=np.uint8, count=0)  # type: ignore[arg-type]
        offset = self.__array_interface__["data"][0] - start.__array_interface__["data"][0]
        return _rebuild, (self.shm, self.dtype, self.shape, self.strides, offset)

    def __reduce__(self) -> Any:
        return self.__reduce_ex__(2)


def _rebuild(
    shm: SharedMemory, dtype: Any, shape: tuple[int, ...], strides: tuple[int, ...], offset: int
) -> SharedNDArray:
    arr = np.ndarray.__new__(
        SharedNDArray, shape, dtype, buffer=shm._mmap, offset=offset, strides=strides
    )
    arr.shm = shm
    return arr  # type: ignore[no-any-return]


def ndarray(shape: int | tuple[int, ...], dtype: Any = float, order: str = "C") -> SharedNDArray:
    """A zero-filled array of *shape* and *dtype* in shared memory.

    Pass it to children (Process arguments, Pipe, Queue, Pool arguments and results): they
    receive a view of the same memory, in O(1) whatever its size.  The segment is freed
    once no process holds an array on it.  Raises :class:`ValueError` / :class:`TypeError`
    as :func:`numpy.empty` does for a bad shape, dtype or order.
    """
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise TypeError(f"dtype {dt} holds Python objects, which cannot live in shared memory")
    shape_t = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    if any(s < 0 for s in shape_t):
        raise ValueError(f"negative dimensions are not allowed: {shape_t}")
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    nbytes = math.prod(shape_t) * dt.itemsize
    shm = SharedMemory(create=True, size=max(nbytes, 1), _pin=False)
    arr = np.ndarray.__new__(
        SharedNDArray, shape_t, dt, buffer=shm._mmap, order="C" if order == "C" else "F"
    )
    arr.shm = shm
    return arr  # type: ignore[no-any-return]


def share(array: Any) -> SharedNDArray:
    """A copy of *array* (anything :func:`numpy.asarray` accepts) in shared memory."""
    src = np.asarray(array)
    out = ndarray(src.shape, src.dtype)
    out[...] = src
    return out


SharedNDArray.__module__ = "procly.shared_memory"
