""":class:`ShareableList`: a fixed-length list of scalars stored in one shared segment.

Layout of the segment (all little-endian/native 8-byte fields)::

    [ n ][ slot 0: offset, capacity, type, length ] ... [ slot n-1 ] [ data ... ]

Each slot records where its bytes live (*offset* into the data area, *capacity* bytes
reserved there), what type is stored (one code per supported type) and, for ``str`` /
``bytes``, the exact length, so that values ending in NUL bytes round-trip (the standard
library strips trailing NULs).  Values of other types may replace an item as long as they
fit its capacity, as in the standard library.

There is no lock: like the standard library, concurrent writers must synchronise.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

from ._segment import SharedMemory

__all__ = ("ShareableList",)

_HEAD = struct.Struct("q")
_SLOT = struct.Struct("qqqq")
_ALIGN = 8

# type codes stored in the segment; the format strings are those the stdlib reports
_INT, _FLOAT, _BOOL, _STR, _BYTES, _NONE = range(6)
_CODES: dict[type, int] = {int: _INT, float: _FLOAT, bool: _BOOL, str: _STR, bytes: _BYTES}
_FIXED = {_INT: struct.Struct("q"), _FLOAT: struct.Struct("d"), _BOOL: struct.Struct("?")}
_FORMATS = {_INT: "q", _FLOAT: "d", _BOOL: "xxxxxxx?", _NONE: "xxxxxx?x"}


class UnsupportedItemError(TypeError, KeyError):
    """Raised by :class:`ShareableList` for an item that is not int, float, bool, str,
    bytes or None (the standard library let a bare :class:`KeyError` escape; this is both)."""

    def __str__(self) -> str:
        return str(self.args[0])


def _code_of(value: Any) -> int:
    if value is None:
        return _NONE
    code = _CODES.get(type(value))
    if code is None:
        raise UnsupportedItemError(
            f"ShareableList items must be int, float, bool, str, bytes or None, "
            f"not {type(value).__name__}"
        )
    return code


def _encode(code: int, value: Any) -> bytes:
    if code == _STR:
        return bytes(value.encode("utf-8"))
    if code == _BYTES:
        return bytes(value)
    if code == _NONE:
        return b""
    return _FIXED[code].pack(value)


def _capacity(code: int, encoded: bytes) -> int:
    if code in (_STR, _BYTES):
        return _ALIGN * (len(encoded) // _ALIGN + 1)
    return _ALIGN


class ShareableList:
    """A list of at most a fixed number of scalars shared between processes (drop-in for
    the standard library's ``multiprocessing.shared_memory.ShareableList``).

    ``ShareableList(sequence)`` creates a new segment holding *sequence*;
    ``ShareableList(name=name)`` attaches to an existing one.  Items are int, float, bool,
    str, bytes or None (:class:`UnsupportedItemError`, a :class:`TypeError` and
    :class:`KeyError`, otherwise).  Its length never changes; an item may be replaced by a
    value of any supported type that fits the room the original took (``str``/``bytes``:
    :class:`ValueError` if it does not).  Pickles as its name.
    """

    shm: SharedMemory

    def __init__(self, sequence: Iterable[Any] | None = None, *, name: str | None = None) -> None:
        if name is None or sequence is not None:
            items = list(sequence or ())
            codes = [_code_of(v) for v in items]
            encoded = [_encode(c, v) for c, v in zip(codes, items, strict=True)]
            caps = [_capacity(c, e) for c, e in zip(codes, encoded, strict=True)]
            data_start = _HEAD.size + _SLOT.size * len(items)
            self.shm = SharedMemory(name, create=True, size=data_start + sum(caps))
            buf = self._view()
            _HEAD.pack_into(buf, 0, len(items))
            offset = 0
            for i, (code, enc, cap) in enumerate(zip(codes, encoded, caps, strict=True)):
                _SLOT.pack_into(buf, _HEAD.size + i * _SLOT.size, offset, cap, code, len(enc))
                buf[data_start + offset : data_start + offset + len(enc)] = enc
                offset += cap
        else:
            self.shm = SharedMemory(name)

    def _view(self) -> memoryview:
        buf = self.shm.buf
        if buf is None:
            raise ValueError("operation on a ShareableList whose segment was closed")
        return buf

    def __len__(self) -> int:
        return int(_HEAD.unpack_from(self._view(), 0)[0])

    def _slot(self, position: int, *, assigning: bool = False) -> tuple[int, int, int, int, int]:
        if not isinstance(position, int):
            raise TypeError(
                f"ShareableList indices must be integers, not {type(position).__name__}"
            )
        n = len(self)
        if position < 0:
            position += n
        if not 0 <= position < n:
            raise IndexError("assignment index out of range" if assigning else "index out of range")
        offset, cap, code, length = _SLOT.unpack_from(
            self._view(), _HEAD.size + position * _SLOT.size
        )
        return position, _HEAD.size + _SLOT.size * n + offset, cap, code, length

    def __getitem__(self, position: int) -> Any:
        _, start, _cap, code, length = self._slot(position)
        buf = self._view()
        if code == _NONE:
            return None
        if code == _STR:
            return bytes(buf[start : start + length]).decode("utf-8")
        if code == _BYTES:
            return bytes(buf[start : start + length])
        return _FIXED[code].unpack_from(buf, start)[0]

    def __setitem__(self, position: int, value: Any) -> None:
        position, start, cap, _code, _length = self._slot(position, assigning=True)
        code = _code_of(value)
        enc = _encode(code, value)
        if len(enc) > cap:
            raise ValueError("bytes/str item exceeds available storage")
        buf = self._view()
        buf[start : start + len(enc)] = enc
        # offset and capacity stay; type and length change
        struct.pack_into("qq", buf, _HEAD.size + position * _SLOT.size + 16, code, len(enc))

    def __iter__(self) -> Iterator[Any]:
        for i in range(len(self)):
            yield self[i]

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.shm)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)}, name={self.shm.name!r})"

    @property
    def format(self) -> str:
        """The struct format of the items, as the standard library reports it."""
        parts = []
        for i in range(len(self)):
            _, _start, cap, code, _length = self._slot(i)
            parts.append(f"{cap}s" if code in (_STR, _BYTES) else _FORMATS[code])
        return "".join(parts)

    def count(self, value: Any) -> int:
        """Number of items equal to *value*."""
        return sum(1 for item in self if item == value)

    def index(self, value: Any) -> int:
        """Position of the first item equal to *value*; :class:`ValueError` if none."""
        for position, item in enumerate(self):
            if item == value:
                return position
        raise ValueError(f"{value!r} not in this container")


def _rebuild(cls: type[ShareableList], shm: SharedMemory) -> ShareableList:
    obj = cls.__new__(cls)
    obj.shm = shm
    return obj


ShareableList.__module__ = "procly.shared_memory"
UnsupportedItemError.__module__ = "procly.shared_memory"
