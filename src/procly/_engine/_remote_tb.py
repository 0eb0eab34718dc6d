"""Exception transport: a task's exception crosses back as its own type, with its traceback.

In the worker, :func:`capture` turns a caught exception into a :class:`RemoteError`: the
exception object plus the traceback formatted over there.  In the parent,
:meth:`RemoteError.rebuild` returns the *same type* of exception with a
:class:`~procly.errors.RemoteTraceback` as ``__cause__``, so ``except ValueError`` in the
caller still matches and the printed traceback shows both sides (the standard library's
behaviour).

An exception that cannot make the trip (it does not pickle, or it pickles into something
that cannot be rebuilt, such as an exception class whose ``__init__`` takes different
arguments than it passes to ``Exception.__init__``) is replaced, in the worker, by a
:class:`~procly.errors.SerializationError` that names it and carries its text and
traceback: the task fails clearly instead of the pool hanging.  The same happens to a
return value that cannot be pickled (:func:`unpicklable_result`).
"""

from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass

from .._errors import RemoteTraceback, SerializationError
from .._serial import _pickler

__all__ = ("RemoteError", "capture", "describe_call", "unpicklable_result")

#: A remote traceback longer than this is cut in the middle (it is text for humans).
_MAX_TB_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class RemoteError:
    """A task's exception on its way to the parent (wire type, see :mod:`._messages`)."""

    exception: BaseException
    traceback: str

    def __reduce__(self) -> tuple[object, ...]:
        return (RemoteError, (self.exception, self.traceback))

    def rebuild(self) -> BaseException:
        """The exception to raise in the caller: its own type, the remote traceback as cause."""
        exc = self.exception
        exc.__cause__ = RemoteTraceback(self.traceback)
        return exc


def _format(exc: BaseException, context: str = "") -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + context
    if len(text) > _MAX_TB_CHARS:
        half = _MAX_TB_CHARS // 2
        text = text[:half] + "\n[... traceback truncated ...]\n" + text[-half:]
    return f'\n"""\n{text}"""'


def _roundtrips(exc: BaseException) -> str | None:
    """``None`` if *exc* pickles and unpickles; else why not."""
    try:
        data = _pickler.dumps(exc)
    except Exception as err:
        return f"it cannot be pickled ({err})"
    try:
        pickle.loads(data)
    except Exception as err:
        return f"it cannot be rebuilt from its pickle ({type(err).__name__}: {err})"
    return None


#: Longest description of a failing call's arguments in the remote traceback.
_MAX_ARGS_CHARS = 300


def describe_call(fn: object, args: object, how: str = "called with") -> str:
    """``"in task: name called with args"``, the arguments' repr cut to a sane length
    (never raises)."""
    try:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        shown = repr(args)
    except Exception:
        return ""
    if len(shown) > _MAX_ARGS_CHARS:
        shown = shown[: _MAX_ARGS_CHARS - 3] + "..."
    return f"in task: {name} {how} {shown}\n"


def capture(exc: BaseException, context: str = "") -> RemoteError:
    """Package *exc* (caught in a worker) for the trip to the parent.

    *context* (see :func:`describe_call`) is appended to the traceback text.  Never
    raises: an exception that cannot travel is replaced by a
    :class:`~procly.errors.SerializationError` describing it.
    """
    tb = _format(exc, context)
    # Tracebacks never pickle; the text above keeps what they said.
    exc.__traceback__ = None
    problem = _roundtrips(exc)
    if problem is None:
        return RemoteError(exc, tb)
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable>"
    replacement = SerializationError(
        f"the task raised {name}({text!r}), which cannot be sent back to the parent: {problem}"
    )
    return RemoteError(replacement, tb)


def unpicklable_result(value: object, error: BaseException) -> RemoteError:
    """The error that replaces a return value that could not be pickled."""
    cls = type(value)
    message = (
        f"the task's result of type {cls.__module__}.{cls.__qualname__} cannot be sent back "
        f"to the parent: {error}"
    )
    return RemoteError(SerializationError(message), _format(error))
