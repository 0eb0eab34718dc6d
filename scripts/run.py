#!/usr/bin/env python3
"""The project's two entry points, for a fresh machine with nothing but Python.

    python3 scripts/run.py demo   # tour of the examples, then the quick benchmark
    python3 scripts/run.py test   # ruff, mypy, import-linter and the whole test suite

Each creates ``.venv`` in the checkout on first use and installs procly with its test
extras there; later runs reuse it unless ``pyproject.toml``, ``setup.py`` or a C source changed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def ensure_venv() -> None:
    stamp = VENV / ".procly-installed"
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", ROOT / "setup.py", *sorted(ROOT.glob("src/procly/**/*.c"))):
        if path.exists():
            digest.update(path.read_bytes())
    want = digest.hexdigest()  # reinstall (and rebuild the C extension) when any of these change
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing procly[test] into .venv ...", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True, cwd=ROOT)
    stamp.write_text(want)


def run(*cmd: str) -> None:
    print("$", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(result.returncode)


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    extra = sys.argv[2:]
    if what not in ("demo", "test"):
        sys.exit(__doc__)
    ensure_venv()
    os.environ.pop("PYTHONPATH", None)
    if what == "demo":
        run(str(PY), "-m", "procly", "tour")
        run(str(PY), "-m", "procly", "bench", "--quick", *extra)
    else:
        run(str(PY), "-m", "ruff", "check", "src", "tests")
        run(str(PY), "-m", "mypy")
        run(str(VENV / "bin" / "lint-imports"))
        run(str(PY), "-m", "pytest", "-q", *extra)


if __name__ == "__main__":
    main()
