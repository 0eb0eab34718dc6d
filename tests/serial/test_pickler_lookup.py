"""Pickling by reference finds a class through its public home even before that module
has been imported (what pickle's own ``save_global`` does)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from procly._serial._pickler import dumps, loads


def test_class_whose_public_module_is_not_imported_yet_goes_by_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "lookup_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_impl.py").write_text(
        "class Thing:\n    pass\n\nThing.__module__ = 'lookup_pkg.public'\n"
    )
    (pkg / "public.py").write_text("from ._impl import Thing as Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        from lookup_pkg._impl import Thing  # type: ignore[import-not-found]

        assert "lookup_pkg.public" not in sys.modules
        data = dumps(Thing)
        assert b"_load_by_value" not in data, "pickled by value, not by name"
        assert loads(data) is Thing
    finally:
        for name in [m for m in sys.modules if m.startswith("lookup_pkg")]:
            del sys.modules[name]
