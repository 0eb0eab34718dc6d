"""``python -m procly tour``: the README's main job runs every part and reports it."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_tour_runs_every_part(method: str) -> None:
    code = (
        "import sys, procly\n"
        f"procly.set_start_method({method!r})\n"
        "from procly._tour import run_tour\n"
        "sys.exit(run_tour())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"start method: {method}" in out.stdout
    assert "not available yet" not in out.stdout
    assert "exit codes: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]" in out.stdout
    assert "got 6859" in out.stdout
    assert "collected: [2, 9, 28, 65, 126, 217, 344, 513, 730, 1001]" in out.stdout
    assert "[1, 8, 27, 64, 125, 216, 343, 512, 729, 1000]" in out.stdout
    assert "value = 6 (0+1+2+3), array = [0, 1, 4, 9]" in out.stdout
    assert sum(line.strip().endswith("done") for line in out.stdout.splitlines()) == 10


def test_cli_rejects_unknown_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "procly", "nonsense"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "invalid choice" in out.stderr
