"""Shared ctypes: RawValue, RawArray, Value, Array, synchronized, copy (layer 2).

::

    parent: Value('i', 0) = Synchronized(c_int in a heap block, lock)
       |  Process(args=(v,)): fork inherits the mapping; spawn/forkserver pickle
       |  (ctype, Block(arena fd, offset, size)) + the lock's own reduction
       v
    child: c_int.from_buffer(the same arena, mapped once) + the same lock

* **The allocating process** takes a block from its heap (:mod:`._heap`) and builds the
  ctypes object over it with ``from_buffer``; the block returns to the heap when the
  object is collected there.
* **A child or a receiver** gets the arena as a descriptor and builds an object of the same
  ctypes type over the same bytes; writes are visible both ways.

Differences from the standard library: the memory is anonymous (no file in ``/dev/shm`` or
a temporary directory), so it cannot leak; and objects may also travel through a
Connection over a Unix socket, not only as Process arguments.  The lock of a synchronized
wrapper comes from the context (``ctx.RLock()``) the caller passes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any, Protocol

from .._serial import _pickler
from ._heap import Block, heap_malloc

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
    "typecode_to_type",
)

typecode_to_type: dict[str, type[Any]] = {
    "c": ctypes.c_char,
    "u": ctypes.c_wchar,
    "b": ctypes.c_byte,
    "B": ctypes.c_ubyte,
    "h": ctypes.c_short,
    "H": ctypes.c_ushort,
    "i": ctypes.c_int,
    "I": ctypes.c_uint,
    "l": ctypes.c_long,
    "L": ctypes.c_ulong,
    "q": ctypes.c_longlong,
    "Q": ctypes.c_ulonglong,
    "f": ctypes.c_float,
    "d": ctypes.c_double,
}


class LockContext(Protocol):
    """What the synchronized wrappers need from a context: an ``RLock()`` factory."""

    def RLock(self) -> Any: ...


def _ctype(typecode_or_type: str | type[Any]) -> type[Any]:
    if isinstance(typecode_or_type, str):
        try:
            return typecode_to_type[typecode_or_type]
        except KeyError:
            raise TypeError(
                f"bad typecode {typecode_or_type!r} (must be one of "
                f"{''.join(typecode_to_type)} or a ctypes type)"
            ) from None
    if not (isinstance(typecode_or_type, type) and hasattr(typecode_or_type, "from_buffer")):
        raise TypeError(f"{typecode_or_type!r} is neither a typecode nor a ctypes type")
    return typecode_or_type


def _reduce_ctype(obj: Any) -> Any:
    block = obj.__dict__.get("_procly_block") if hasattr(obj, "__dict__") else None
    if block is None:
        return NotImplemented  # an ordinary ctypes object: pickle's own way
    if isinstance(obj, ctypes.Array):
        return _rebuild_ctype, (obj._type_, block, obj._length_)
    return _rebuild_ctype, (type(obj), block, None)


def _rebuild_ctype(type_: type[Any], block: Block, length: int | None) -> Any:
    if length is not None:
        type_ = type_ * length
    _pickler.register(type_, _reduce_ctype)
    obj = type_.from_buffer(block.view())
    obj._procly_block = block  # keeps the memory alive, and is how it pickles
    return obj


def _new(type_: type[Any], length: int | None = None) -> Any:
    full = type_ * length if length is not None else type_
    return _rebuild_ctype(type_, heap_malloc(ctypes.sizeof(full)), length)


def RawValue(typecode_or_type: str | type[Any], *args: Any) -> Any:
    """A ctypes object in shared memory, without a lock.

    Raises :class:`TypeError` for an unknown typecode or a bad initial value.
    """
    obj = _new(_ctype(typecode_or_type))
    if args:
        obj.__init__(*args)
    return obj


def RawArray(typecode_or_type: str | type[Any], size_or_initializer: int | Sequence[Any]) -> Any:
    """A ctypes array in shared memory, without a lock: zero-filled of length *size*, or
    holding the items of *initializer*.

    Raises :class:`TypeError` for an unknown typecode or an unsuitable item,
    :class:`ValueError` for a negative size.
    """
    type_ = _ctype(typecode_or_type)
    if isinstance(size_or_initializer, int):
        if size_or_initializer < 0:
            raise ValueError(f"array size must be non-negative, not {size_or_initializer}")
        return _new(type_, size_or_initializer)
    items = list(size_or_initializer)
    obj = _new(type_, len(items))
    obj.__init__(*items)
    return obj


def _lock_for(lock: Any, ctx: LockContext | None) -> Any:
    if lock is True or lock is None:
        if ctx is None:
            raise ValueError("a context is needed to make the lock (pass ctx=...)")
        return ctx.RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return lock


def Value(
    typecode_or_type: str | type[Any], *args: Any, lock: Any = True, ctx: LockContext | None = None
) -> Any:
    """A shared ctypes object guarded by a lock (``lock=True``: a new ``ctx.RLock()``; a lock
    object: that one; ``False``: the raw object, no wrapper).

    Raises :class:`AttributeError` if *lock* is neither a bool nor has ``acquire``.
    """
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock, ctx), ctx=ctx)


def Array(
    typecode_or_type: str | type[Any],
    size_or_initializer: int | Sequence[Any],
    *,
    lock: Any = True,
    ctx: LockContext | None = None,
) -> Any:
    """A shared ctypes array guarded by a lock; *lock* as for :func:`Value`."""
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    return synchronized(obj, _lock_for(lock, ctx), ctx=ctx)


def copy(obj: Any) -> Any:
    """A new shared ctypes object (no lock) holding a copy of *obj*'s bytes."""
    new_obj = _new(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


class SynchronizedBase:
    """A ctypes object plus the lock that guards it (standard-library wrapper)."""

    def __init__(self, obj: Any, lock: Any = None, ctx: LockContext | None = None) -> None:
        self._obj = obj
        self._lock = lock if lock else _lock_for(True, ctx)
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._is_mine: Any = getattr(self._lock, "_is_mine", None)

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *args: Any) -> Any:
        return self._lock.__exit__(*args)

    def __reduce__(self) -> tuple[Any, ...]:
        return synchronized, (self._obj, self._lock)

    def get_obj(self) -> Any:
        """The ctypes object itself (unsynchronized access)."""
        return self._obj

    def get_lock(self) -> Any:
        """The lock that guards it."""
        return self._lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} wrapper for {self._obj}>"


def _locked_property(name: str) -> property:
    # ``with v.get_lock(): v.value += 1`` would take the lock three times; when this thread
    # already holds it (``_is_mine``, which procly's and the stdlib's locks have), taking it
    # again only bumps a recursion count, so the access goes straight through.
    def fget(self: SynchronizedBase) -> Any:
        is_mine = self._is_mine
        if is_mine is not None and is_mine():
            return getattr(self._obj, name)
        lock = self._lock
        lock.acquire()
        try:
            return getattr(self._obj, name)
        finally:
            lock.release()

    def fset(self: SynchronizedBase, value: Any) -> None:
        is_mine = self._is_mine
        if is_mine is not None and is_mine():
            setattr(self._obj, name, value)
            return
        lock = self._lock
        lock.acquire()
        try:
            setattr(self._obj, name, value)
        finally:
            lock.release()

    return property(fget, fset)


class Synchronized(SynchronizedBase):
    """A synchronized scalar: ``.value`` reads and writes under the lock."""

    value = _locked_property("value")


class SynchronizedArray(SynchronizedBase):
    """A synchronized array: items and slices are read and written under the lock."""

    def __len__(self) -> int:
        return len(self._obj)

    def __getitem__(self, i: Any) -> Any:
        with self:
            return self._obj[i]

    def __setitem__(self, i: Any, value: Any) -> None:
        with self:
            self._obj[i] = value

    def __getslice__(self, start: int, stop: int) -> Any:
        with self:
            return self._obj[start:stop]

    def __setslice__(self, start: int, stop: int, values: Any) -> None:
        with self:
            self._obj[start:stop] = values


class SynchronizedString(SynchronizedArray):
    """A synchronized ``c_char`` array, with ``.value`` and ``.raw``."""

    value = _locked_property("value")
    raw = _locked_property("raw")


class _StructClasses:
    """Synchronized wrapper classes made for ctypes structures, by structure class."""

    def __init__(self) -> None:
        self.by_type: dict[type, type[SynchronizedBase]] = {}

    def get(self, cls: type) -> type[SynchronizedBase]:
        scls = self.by_type.get(cls)
        if scls is None:
            fields = {f[0]: _locked_property(f[0]) for f in cls._fields_}  # type: ignore[attr-defined]
            scls = type("Synchronized" + cls.__name__, (SynchronizedBase,), fields)
            scls.__module__ = "procly.sharedctypes"
            self.by_type[cls] = scls
        return scls


_STRUCT_CLASSES = _StructClasses()


def synchronized(obj: Any, lock: Any = None, ctx: LockContext | None = None) -> Any:
    """Wrap the ctypes object *obj* with *lock* (a new ``ctx.RLock()`` if ``None``).

    Raises :class:`TypeError` if *obj* is already synchronized.
    """
    if isinstance(obj, SynchronizedBase):
        raise TypeError("object already synchronized")
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    return _STRUCT_CLASSES.get(type(obj))(obj, lock, ctx)


for _cls in (SynchronizedBase, Synchronized, SynchronizedArray, SynchronizedString):
    _cls.__module__ = "procly.sharedctypes"
