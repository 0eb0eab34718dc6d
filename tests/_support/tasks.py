"""Task functions shared by the pool and executor tests (importable by spawned workers)."""

from __future__ import annotations

import os


def crash_once(marker: str) -> str:
    """Kill the worker (exit code 4) the first time, keyed by the file *marker*; succeed after."""
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        os._exit(4)
    return "second try"
