"""Suite-wide fixtures: start methods, and the leak guard every test runs under.

The leak guard fails the test that leaves behind a child process (direct or deeper, other
than procly's or the standard library's long-lived helper processes) or a new entry in
``/dev/shm``.  Each pytest run gets its own name prefix for procly's kernel objects, so
concurrent runs on one machine never blame each other.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["PROCLY_NAME_PREFIX"] = f"pt{os.getpid()}"
SHM_PREFIX = os.environ["PROCLY_NAME_PREFIX"]
START_METHODS = ("fork", "spawn", "forkserver")

# Long-lived helper processes that outlive one test by design; their *children* are still
# checked.
_HELPER_MARKERS = ("forkserver", "resource_tracker", "procly._proc._tracker")
_SHM = Path("/dev/shm")
_GRACE_S = 5.0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        found.extend(int(p) for p in text.split())
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def leftover_processes() -> dict[int, str]:
    """Descendants of this process that are not helper daemons: pid -> command line."""
    result: dict[int, str] = {}
    # (pid, whether its parent is a helper): a forked child of the forkserver inherits the
    # server's command line, so only a helper whose parent is not a helper is exempt.
    pending = [(pid, False) for pid in _children(os.getpid())]
    while pending:
        pid, parent_is_helper = pending.pop()
        cmd = _cmdline(pid)
        is_helper = not parent_is_helper and any(marker in cmd for marker in _HELPER_MARKERS)
        if not is_helper:
            result[pid] = "<zombie>" if _is_zombie(pid) else cmd
        pending.extend((child, is_helper) for child in _children(pid))
    return result


def shm_entries() -> set[str]:
    """``/dev/shm`` entries created by procly in this run or by the standard library."""
    try:
        names = os.listdir(_SHM)
    except OSError:
        return set()
    return {n for n in names if SHM_PREFIX in n or n.startswith(("psm_", "sem.mp-", "mp-"))}


@pytest.fixture(autouse=True)
def leak_guard() -> Iterator[None]:
    """Fail the test that leaves a child process or a /dev/shm entry behind."""
    shm_before = shm_entries()
    procs_before = set(leftover_processes())
    yield
    deadline = time.monotonic() + _GRACE_S
    while True:  # bounded wait for processes that were told to exit and are on their way
        procs = {p: c for p, c in leftover_processes().items() if p not in procs_before}
        shm = shm_entries() - shm_before
        if (not procs and not shm) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for name in shm:
        try:
            (_SHM / name).unlink()
        except OSError:
            pass
    problems = []
    if procs:
        problems.append(f"left child processes behind: {procs}")
    if shm:
        problems.append(f"left /dev/shm entries behind: {sorted(shm)}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    """Each process-level test runs once per start method."""
    return str(request.param)
