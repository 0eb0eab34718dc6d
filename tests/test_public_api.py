"""The public surface: every exported name resolves, lives at its public path, and procly's
runtime never imports the standard library's multiprocessing."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import procly

PUBLIC_MODULES = (
    "procly",
    "procly.connection",
    "procly.context",
    "procly.process",
    "procly.reduction",
    "procly.util",
    "procly.synchronize",
    "procly.shared_memory",
    "procly.sharedctypes",
    "procly.queues",
    "procly.pool",
    "procly.futures",
    "procly.managers",
    "procly.errors",
    "procly.dummy",
)


def _existing(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return False
        raise
    return True


@pytest.mark.parametrize("module_name", [m for m in PUBLIC_MODULES if _existing(m)])
def test_every_exported_name_resolves_and_is_public(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert isinstance(exported, tuple), "__all__ is a tuple"
    assert len(set(exported)) == len(exported), "no name exported twice"
    for name in exported:
        obj = getattr(module, name)
        home = getattr(obj, "__module__", None)
        if isinstance(obj, type) and home and home.startswith("procly"):
            # pickle records __module__: it must be a public, importable path
            assert not any(part.startswith("_") for part in home.split(".")), (
                f"{module_name}.{name} has __module__ {home!r}"
            )
            assert getattr(importlib.import_module(home), obj.__qualname__) is obj


#: Standard-library names whose issue has not landed yet.  The test fails both when a name
#: is missing without being listed and when a listed name has arrived (shrink the list).
NOT_YET: dict[str, str] = {}


def test_the_standard_library_names_are_all_there() -> None:
    import multiprocessing

    missing = set(multiprocessing.__all__) - set(procly.__all__)
    assert sorted(missing - set(NOT_YET)) == [], "stdlib names missing from procly"
    assert sorted(set(NOT_YET) - missing) == [], "names listed as not yet landed are there now"


def test_importing_and_using_procly_never_imports_multiprocessing() -> None:
    modules = [m for m in PUBLIC_MODULES if _existing(m)]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import procly\n"
        "if __name__ == '__main__' and hasattr(procly, 'get_all_start_methods'):\n"
        "    for method in procly.get_all_start_methods():\n"
        "        p = procly.get_context(method).Process(target=print, args=(method,))\n"
        "        p.start(); p.join(); assert p.exitcode == 0\n"
        "assert 'multiprocessing' not in sys.modules, sorted(m for m in sys.modules if 'multiprocessing' in m)\n"
        "assert 'concurrent.futures.process' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_errors_facade_exports_the_whole_hierarchy() -> None:
    import procly._errors
    import procly._futures_errors
    import procly.errors

    hierarchy = set(procly._errors.__all__) | set(procly._futures_errors.__all__)
    assert set(procly.errors.__all__) == hierarchy
