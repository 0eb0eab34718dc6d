"""Start methods by name (layer 1): the launcher registry and the chosen default.

A start method is data: a name mapped to the module that implements the
:class:`~procly._proc._launch.Launcher` contract, imported on first use (a program that only
forks never imports the forkserver client).

**Default start method.**  procly uses the default of the standard library of the
interpreter it runs on, so ``import procly as multiprocessing`` changes nothing a program
relied on: ``fork`` on Linux up to Python 3.13 (code written for those versions often relies
on children inheriting module state), ``forkserver`` on Linux from Python 3.14 (CPython
moved away from ``fork`` because forking a multi-threaded parent can deadlock the child),
and ``spawn`` on macOS (``fork`` is unsafe with its system frameworks).
"""

from __future__ import annotations

import importlib
import sys
import threading

from .._errors import ContextAlreadySetError, StartMethodError

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms

if TYPE_CHECKING:
    from typing import Any

    from ._launch import Launcher

__all__ = (
    "DEFAULT_CONTEXT",
    "START_METHOD",
    "StartMethodState",
    "all_start_methods",
    "default_start_method",
    "get_launcher",
)

_LAUNCHER_MODULES: dict[str, str] = {
    "fork": "procly._proc._launch._fork",
    "spawn": "procly._proc._launch._spawn",
    "forkserver": "procly._proc._launch._forkserver",
}


def default_start_method() -> str:
    """The start method used when none was chosen (see the module docstring)."""
    if sys.platform == "darwin":
        return "spawn"
    return "forkserver" if sys.version_info >= (3, 14) else "fork"


def all_start_methods() -> list[str]:
    """The start methods available here, the default first."""
    default = default_start_method()
    return [default, *(m for m in _LAUNCHER_MODULES if m != default)]


def check_method(method: object) -> str:
    """Return *method* if it names an available start method.

    Raises :class:`~procly.errors.StartMethodError` (a :class:`ValueError`) otherwise.
    """
    if not isinstance(method, str) or method not in _LAUNCHER_MODULES:
        raise StartMethodError(f"cannot find context for {method!r}")
    return method


def get_launcher(method: str) -> Launcher:
    """The launcher of *method* (imported on first use).

    Raises :class:`~procly.errors.StartMethodError` for an unknown name.
    """
    module = importlib.import_module(_LAUNCHER_MODULES[check_method(method)])
    launcher: Launcher = module.LAUNCHER
    return launcher


class StartMethodState:
    """The start method fixed for this process (``set_start_method``), or ``None``.

    The one owner of this choice; ``set(None, force=True)`` is its reset.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.method: str | None = None

    def get(self, allow_none: bool = False) -> str | None:
        """The chosen method; when none was chosen, fix the default (unless *allow_none*)."""
        if self.method is None and not allow_none:
            with self._lock:
                if self.method is None:
                    self.method = default_start_method()
        return self.method

    def set(self, method: str | None, force: bool = False) -> None:
        """Fix the start method.

        Raises :class:`~procly.errors.ContextAlreadySetError` (a :class:`RuntimeError`)
        when one is already fixed and *force* is false, and
        :class:`~procly.errors.StartMethodError` for an unknown name.
        """
        with self._lock:
            if self.method is not None and not force:
                raise ContextAlreadySetError("context has already been set")
            if method is None and force:
                self.method = None
                return
            self.method = default_start_method() if method is None else check_method(method)


START_METHOD = StartMethodState()


class DefaultContextSlot:
    """Where the public default context (``procly.get_context()``, built at the top of the
    package) registers itself, so that lower layers that need "the default context" when the
    caller gave none (a Pool, an Executor) reach it without importing upward.

    The one owner of that reference; :meth:`register` replaces it (tests may re-register).
    """

    def __init__(self) -> None:
        self._context: object | None = None

    def register(self, context: object) -> None:
        self._context = context

    def get(self) -> Any:
        """The registered default context.

        Raises :class:`RuntimeError` if nothing registered one, which only happens when a
        layer is used without importing :mod:`procly` at all.
        """
        if self._context is None:
            raise RuntimeError("procly's default context is not registered (import procly first)")
        return self._context


DEFAULT_CONTEXT = DefaultContextSlot()
