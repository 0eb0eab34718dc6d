#!/usr/bin/env python3
"""The project's two entry points, for a fresh machine with nothing but Python.

    python3 scripts/run.py demo   # tour of the examples, then the quick benchmark
    python3 scripts/run.py test   # ruff, mypy, import-linter and the whole test suite

Each creates ``.venv`` in the checkout on first use and installs procly with its test
extras there (``demo`` also the ``bench`` extra: loky, joblib and mpire, the peers the
benchmark compares with); later runs reuse it unless ``pyproject.toml``, ``setup.py`` or a C
source changed.
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


def ensure_venv(extras: tuple[str, ...]) -> None:
    """Create ``.venv`` and install procly with *extras* into it, unless the stamp says
    they are installed already for the current sources."""
    stamp = VENV / ".procly-installed"
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", ROOT / "setup.py", *sorted(ROOT.glob("src/procly/**/*.c"))):
        if path.exists():
            digest.update(path.read_bytes())
    want = digest.hexdigest()  # reinstall (and rebuild the C extension) when any of these change
    have_digest, _, have_extras = (stamp.read_text() if stamp.exists() else "").partition("\n")
    installed = {e for e in have_extras.split(",") if e} if have_digest == want else set()
    if set(extras) <= installed and PY.exists():
        return
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    extras = tuple(sorted(installed | set(extras)))
    print(f"installing procly[{','.join(extras)}] into .venv ...", flush=True)
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-e", f"{ROOT}[{','.join(extras)}]"], check=True, cwd=ROOT)
    stamp.write_text(want + "\n" + ",".join(extras))


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
    # the demo's benchmark runs the peer libraries too (the bench extra); tests need only test
    ensure_venv(("test", "bench") if what == "demo" else ("test",))
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
