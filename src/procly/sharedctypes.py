"""Drop-in for :mod:`multiprocessing.sharedctypes`.

Re-exports of :mod:`procly._shm._ctypes`; ``Value``, ``Array`` and ``synchronized`` take
their lock from the default context when no ``ctx`` is given, as in the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._shm import _ctypes
from ._shm._ctypes import RawArray as RawArray
from ._shm._ctypes import RawValue as RawValue
from ._shm._ctypes import Synchronized as Synchronized
from ._shm._ctypes import SynchronizedArray as SynchronizedArray
from ._shm._ctypes import SynchronizedBase as SynchronizedBase
from ._shm._ctypes import SynchronizedString as SynchronizedString
from ._shm._ctypes import copy as copy
from ._shm._ctypes import typecode_to_type as typecode_to_type

__all__ = (
    "Array",
    "RawArray",
    "RawValue",
    "Synchronized",
    "SynchronizedArray",
    "SynchronizedBase",
    "SynchronizedString",
    "Value",
    "copy",
    "synchronized",
)


def _ctx(ctx: Any) -> Any:
    if ctx is not None:
        return ctx
    from . import _contexts

    return _contexts.default_context


def Value(typecode_or_type: str | type[Any], *args: Any, lock: Any = True, ctx: Any = None) -> Any:
    """See :func:`procly._shm._ctypes.Value`."""
    return _ctypes.Value(
        typecode_or_type, *args, lock=lock, ctx=_ctx(ctx) if lock is True or lock is None else ctx
    )


def Array(
    typecode_or_type: str | type[Any],
    size_or_initializer: int | Sequence[Any],
    *,
    lock: Any = True,
    ctx: Any = None,
) -> Any:
    """See :func:`procly._shm._ctypes.Array`."""
    return _ctypes.Array(
        typecode_or_type,
        size_or_initializer,
        lock=lock,
        ctx=_ctx(ctx) if lock is True or lock is None else ctx,
    )


def synchronized(obj: Any, lock: Any = None, ctx: Any = None) -> Any:
    """See :func:`procly._shm._ctypes.synchronized`."""
    return _ctypes.synchronized(obj, lock, ctx=_ctx(ctx) if lock is None else ctx)
