"""Child entry point for the spawn and forkserver start methods.

Kept to the standard library's cheapest modules plus the process layer: every spawned child
pays for what this module imports before the user's code runs.

Payload layout (built by :func:`procly._proc._launch._spawn.build_payload`)::

    [4-byte big-endian length N][N bytes: pickled preparation dict][pickled process object]

The preparation dict is plain data (paths, names) and is applied first: the process object
may refer to functions of the parent's ``__main__``, which must be importable (as
``__mp_main__``) before it is unpickled.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import types
from collections.abc import Sequence

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ("apply_preparation", "import_main", "run_payload", "spawn_main")

_HEADER = struct.Struct("!I")


class _MainImport:
    """Whether this child is still importing the parent's main module (the one state)."""

    active = False


MAIN_IMPORT = _MainImport()


def import_main(main_path: str | None, main_name: str | None) -> None:
    """Import the parent's main module as ``__mp_main__`` and alias it as ``__main__``.

    The ``if __name__ == "__main__":`` block does not run (the name is ``__mp_main__``).
    Nothing is done for ``python -c``/REPL parents (no source: the pickler sent their
    functions by value) nor for a package's ``__main__`` submodule (which usually has no
    such guard, like the standard library).
    """
    current = sys.modules.get("__mp_main__")
    if current is not None and current is sys.modules.get("__main__"):
        return  # already imported (forkserver preload)
    import importlib.util

    package = None
    if main_name is not None:
        if main_name == "__main__" or main_name.endswith(".__main__"):
            return
        found = importlib.util.find_spec(main_name)
        if found is None or not found.has_location or found.origin is None:
            return
        # A loader is bound to its module's name: load the same file under the new name,
        # keeping the package so that relative imports still resolve.
        main_path = found.origin
        package = main_name.rpartition(".")[0]
    if main_path is None:
        return
    spec = importlib.util.spec_from_file_location("__mp_main__", main_path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    if package:
        module.__package__ = package
    sys.modules["__mp_main__"] = sys.modules["__main__"] = module
    MAIN_IMPORT.active = True
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules["__main__"] = _placeholder_main()
        del sys.modules["__mp_main__"]
        raise
    finally:
        MAIN_IMPORT.active = False


def _placeholder_main() -> types.ModuleType:
    return types.ModuleType("__main__")


def apply_preparation(prep: dict[str, Any]) -> None:
    """Make this interpreter look like the parent where it matters for unpickling."""
    if "sys_path" in prep:
        sys.path[:] = prep["sys_path"]
    if "sys_argv" in prep:
        sys.argv[:] = prep["sys_argv"]
    cwd = prep.get("cwd")
    if cwd is not None:
        try:
            os.chdir(cwd)
        except OSError:
            pass
    os.environ.update(prep.get("environ", {}))
    method = prep.get("start_method")
    if method is not None:
        from .._context import START_METHOD

        START_METHOD.set(method, force=True)
    if prep.get("main_path") is not None or prep.get("main_name") is not None:
        import_main(prep.get("main_path"), prep.get("main_name"))


def run_payload(
    payload: bytes, lifeline_fd: int | None, fds: Sequence[int], *, watch: bool = True
) -> int:
    """Unpack *payload* in this new child and run the process; returns its exit code.

    *lifeline_fd* becomes ``parent_process().sentinel``; unless *watch* is false (the
    kernel already kills this child with its parent: forkserver on Linux), a watcher thread
    also exits the process when it reports the parent gone.
    """
    from ..._serial._fdpass import receiving_fds
    from .._lifeline import LIFELINE

    if lifeline_fd is not None:
        if watch:
            LIFELINE.watch(lifeline_fd)
        else:
            LIFELINE.parent_fd = lifeline_fd
    (prep_len,) = _HEADER.unpack_from(payload)
    prep = pickle.loads(payload[_HEADER.size : _HEADER.size + prep_len])
    apply_preparation(prep)
    with receiving_fds(fds):
        process = pickle.loads(payload[_HEADER.size + prep_len :])
    code: int = process._bootstrap(lifeline_fd)
    return code


def spawn_main() -> None:
    """Entry point of a spawned interpreter; argv: ``payload_fd lifeline_fd fd,fd,...``."""
    from ..._os._fds import read_all

    payload_fd = int(sys.argv[1])
    lifeline_fd = int(sys.argv[2])
    fds = [int(x) for x in sys.argv[3].split(",") if x]
    payload = read_all(payload_fd)
    os.close(payload_fd)
    sys.exit(run_payload(payload, lifeline_fd if lifeline_fd >= 0 else None, fds))
