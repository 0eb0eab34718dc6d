"""Objects <-> bytes for everything that crosses a process boundary (layer 0).

Why not plain :mod:`pickle`:

* **Out-of-band buffers.**  Pickle protocol 5 lets large buffers (NumPy arrays,
  :class:`pickle.PickleBuffer`, :class:`memoryview`) travel *beside* the pickle stream
  instead of being copied into it.  :func:`dumps_oob` returns the stream plus the raw
  buffers so that a connection can hand them to the kernel with one scatter-gather send.
  Buffers under :data:`OOB_THRESHOLD` stay in-band: an extra iovec costs more than a copy.
  (The C pickler writes :class:`bytes` and :class:`bytearray` values itself, before any hook
  runs, so those are out-of-band only when they are the whole message; connections handle
  that case.)
* **Functions by value when needed.**  A lambda, a closure, a function defined inside a
  function, or anything from an interactive or ``python -c`` ``__main__`` cannot be found
  by name in the receiving process.  Such objects are pickled by value with cloudpickle,
  nested inside the ordinary stream; everything else keeps pickle's by-reference semantics,
  so module globals stay shared the way users expect (cloudpickle alone would give each
  function of ``__main__`` its own copy of the globals).  cloudpickle is imported only when
  such an object is actually met.
* **A reducer registry.**  Higher layers (connections, locks, shared memory) register how
  their objects cross the boundary with :func:`register`; this layer never imports them.
* **Clear errors, before anything is sent.**  A failure raises
  :class:`~procly.errors.SerializationError` naming the innermost unpicklable object, its type
  and its path inside what was sent.
"""

from __future__ import annotations

import copyreg
import importlib
import io
import pickle
import sys
import types
from collections.abc import Callable, Iterable, Iterator

from .._errors import SerializationError

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Reducer: TypeAlias = Callable[[Any], str | tuple[Any, ...]]

__all__ = (
    "OOB_THRESHOLD",
    "ProcPickler",
    "dumps",
    "dumps_oob",
    "loads",
    "register",
)

#: Buffers smaller than this are copied into the pickle stream; larger ones go out-of-band.
OOB_THRESHOLD = 64 * 1024



class _ReducerRegistry:
    """The one owner of type -> reducer registrations (see :func:`register`)."""

    def __init__(self) -> None:
        self.by_type: dict[type, Reducer] = {}

    def register(self, type_: type, reducer: Reducer) -> None:
        self.by_type[type_] = reducer


_REGISTRY = _ReducerRegistry()


def register(type_: type, reducer: Reducer) -> None:
    """Make *reducer* the way objects of exactly *type_* are pickled by procly.

    *reducer* returns what :meth:`object.__reduce__` would.  This is the hook higher layers
    use (a lower layer never imports them), and what ``procly.reduction.ForkingPickler.register``
    calls.
    """
    _REGISTRY.register(type_, reducer)


def _main_has_source() -> bool:
    """Whether a receiving process can find ``__main__`` objects by name.

    True for ``python script.py`` and ``python -m pkg.mod`` (fork inherits the module; spawn
    and forkserver re-import it as ``__mp_main__``); false for ``python -c``, the REPL,
    notebooks and ``python -m pkg`` (a package's ``__main__``, which children do not
    re-import), where only pickling by value works.
    """
    main = sys.modules.get("__main__")
    if main is None:
        return False
    spec = getattr(main, "__spec__", None)
    spec_name = getattr(spec, "name", None) if spec is not None else None
    if spec_name is not None and (spec_name == "__main__" or spec_name.endswith(".__main__")):
        # ``python -m pkg``: a package's __main__ is not re-imported by spawned children
        # (it rarely has the ``if __name__ == "__main__":`` guard), so its functions must
        # travel by value.
        return False
    return getattr(main, "__file__", None) is not None or spec_name is not None


def _findable_by_name(obj: Any) -> bool:
    """Whether pickling *obj* (a function or class) by reference will resolve on the other side."""
    qualname: str = getattr(obj, "__qualname__", "")
    if "<" in qualname:  # <lambda>, <locals>
        return False
    module_name = getattr(obj, "__module__", None)
    if module_name is None:
        return False
    if module_name == "__main__" and not _main_has_source():
        return False
    target: Any = sys.modules.get(module_name)
    if target is None:
        # What pickle's own save_global does: a class whose public home (``__module__``) has
        # not been imported yet is still found by name.
        try:
            target = importlib.import_module(module_name)
        except Exception:
            return False
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return False
    return target is obj


def _load_by_value(payload: bytes) -> Any:
    return pickle.loads(payload)


def _by_value(obj: Any) -> tuple[Any, ...]:
    import cloudpickle  # lazily: most programs never need it

    return (_load_by_value, (cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL),))


def _rebuild_memoryview(buffer: Any) -> memoryview:
    return memoryview(buffer)


class ProcPickler(pickle.Pickler):
    """The pickler procly uses everywhere (also ``procly.reduction.ForkingPickler``).

    It is the C pickler plus a :meth:`reducer_override` hook; the hook runs only for
    objects that are not ``None``/bool/int/float/str/bytes/dict/list/tuple/set, so plain
    data pickles at full C speed.
    """

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        reducer = _REGISTRY.by_type.get(cls)
        if reducer is not None:
            return reducer(obj)
        if cls is types.FunctionType or isinstance(obj, type):
            return NotImplemented if _findable_by_name(obj) else _by_value(obj)
        if cls is memoryview:
            return (_rebuild_memoryview, (pickle.PickleBuffer(obj),))
        return NotImplemented

    @classmethod
    def register(cls, type_: type, reducer: Reducer) -> None:
        """Standard-library spelling of :func:`register`."""
        register(type_, reducer)

    @classmethod
    def dumps(cls, obj: Any, protocol: int | None = None) -> memoryview:
        """Standard-library spelling: pickle *obj* into a buffer."""
        buf = io.BytesIO()
        cls(buf, protocol if protocol is not None else pickle.HIGHEST_PROTOCOL).dump(obj)
        return buf.getbuffer()

    loads = staticmethod(pickle.loads)


# Its public home is procly.reduction.ForkingPickler (the standard-library name), which is what
# pickle must record should the class itself ever be pickled.
ProcPickler.__module__ = "procly.reduction"
ProcPickler.__name__ = ProcPickler.__qualname__ = "ForkingPickler"


_ATOMS = frozenset({int, float, str, bytes, bool, type(None), complex})


def _is_plain(obj: Any) -> bool:
    """Cheap check for data the hook could never change: then ``pickle.dumps`` is exact.

    Building a pickler object costs about 1 us; ``pickle.dumps`` avoids it, which matters
    for the small messages that dominate round trips.
    """
    cls = type(obj)
    if cls in _ATOMS:
        return True
    if (cls is tuple or cls is list) and len(obj) <= 8:
        return all(type(item) in _ATOMS for item in obj)
    return False


def dumps(obj: Any) -> bytes:
    """Pickle *obj* into one self-contained byte string (no out-of-band buffers).

    Raises :class:`~procly.errors.SerializationError` naming the culprit.
    """
    if _is_plain(obj):
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    buf = io.BytesIO()
    try:
        ProcPickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    except Exception as exc:
        raise _serialization_error(obj, exc) from exc
    return buf.getvalue()


def dumps_oob(obj: Any) -> tuple[bytes, list[memoryview]]:
    """Pickle *obj*; large buffers are returned beside the stream, not copied into it.

    Returns ``(stream, buffers)``; each buffer is a contiguous byte view of the sender's
    memory, valid while *obj* is alive.  Feed both to :func:`loads` on the other side.
    """
    if _is_plain(obj):
        return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), []
    views: list[memoryview] = []

    def collect(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()  # raises BufferError for non-contiguous memory: then keep in-band
        if raw.nbytes < OOB_THRESHOLD:
            return True
        views.append(raw)
        return False

    buf = io.BytesIO()
    try:
        ProcPickler(buf, pickle.HIGHEST_PROTOCOL, buffer_callback=collect).dump(obj)
    except Exception as exc:
        raise _serialization_error(obj, exc) from exc
    return buf.getvalue(), views


def loads(data: bytes | bytearray | memoryview, buffers: Iterable[Any] = ()) -> Any:
    """Inverse of :func:`dumps` / :func:`dumps_oob`."""
    return pickle.loads(data, buffers=buffers)


# -- error reporting (cold path) ---------------------------------------------------------

_MAX_DEPTH = 30


def _children(obj: Any) -> Iterator[tuple[str, Any]]:
    """The parts of *obj* that pickle would recurse into, with a path suffix for each."""
    if isinstance(obj, dict):
        for key, value in list(obj.items())[:1000]:
            yield f"[{key!r}]", value
        return
    if isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj[:1000]):
            yield f"[{index}]", value
        return
    if isinstance(obj, (set, frozenset)):
        for value in list(obj)[:1000]:
            yield f"{{{value!r}}}", value
        return
    if isinstance(obj, (type, types.FunctionType, types.ModuleType)):
        return
    reduce = copyreg.__reduce_ex__ if not hasattr(obj, "__reduce_ex__") else obj.__reduce_ex__
    try:
        reduced = reduce(pickle.HIGHEST_PROTOCOL)
    except Exception:
        return
    if not isinstance(reduced, tuple):
        return
    if len(reduced) > 1 and isinstance(reduced[1], tuple):
        for index, value in enumerate(reduced[1]):
            if value is not type(obj):
                yield f".<arg {index}>", value
    if len(reduced) > 2 and reduced[2] is not None:
        state = reduced[2]
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            for key, value in state.items():
                yield f".{key}", value
        else:
            yield ".<state>", state


def _picklable(obj: Any) -> bool:
    try:
        ProcPickler(io.BytesIO(), pickle.HIGHEST_PROTOCOL).dump(obj)
    except Exception:
        return False
    return True


def _find_culprit(obj: Any, path: str, depth: int) -> tuple[str, Any]:
    """Descend to the innermost part of *obj* that does not pickle."""
    if depth < _MAX_DEPTH:
        for suffix, child in _children(obj):
            if child is obj or _picklable(child):
                continue
            return _find_culprit(child, path + suffix, depth + 1)
    return path, obj


def _serialization_error(obj: Any, exc: Exception) -> SerializationError:
    if isinstance(exc, SerializationError):
        return exc
    try:
        path, culprit = _find_culprit(obj, "obj", 0)
    except Exception:  # the search itself must never hide the original error
        path, culprit = "obj", obj
    try:
        shown = repr(culprit)
    except Exception:
        shown = object.__repr__(culprit)
    if len(shown) > 200:
        shown = shown[:197] + "..."
    cls = type(culprit)
    where = "" if path == "obj" else f" at {path}"
    return SerializationError(
        f"cannot serialize {shown} of type {cls.__module__}.{cls.__qualname__}{where}: "
        f"{type(exc).__name__}: {exc}"
    )
