"""Run Python code in a fresh interpreter (exit behaviour, signals, __main__ handling)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def run_python(
    args: Sequence[str], *, cwd: str | Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with procly importable; returns the completed process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def run_in_subprocess(code: str, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run *code* (dedented) with ``python -c``."""
    return run_python(["-c", textwrap.dedent(code)], timeout=timeout)


def process_gone(pid: int) -> bool:
    """Whether *pid* has exited: no such process, or only a zombie (or dead) entry is left."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
