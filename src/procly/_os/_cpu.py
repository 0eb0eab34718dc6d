"""How many CPUs this process may actually use (layer 0: standard library only).

:func:`os.cpu_count` counts the machine's CPUs; a container or ``taskset`` may allow far
fewer, and a pool sized from the machine count then oversubscribes.  :func:`usable_cpu_count`
takes the smallest of the CPU count, the CPU-affinity mask and the cgroup CPU quota
(v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded up.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ("cgroup_cpu_limit", "cpu_count", "usable_cpu_count")

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_count() -> int:
    """The number of CPUs in the machine (the standard library's ``cpu_count``).

    Raises :class:`NotImplementedError` when the platform cannot tell, as the standard
    library does.
    """
    count = os.cpu_count()
    if count is None:
        raise NotImplementedError("cannot determine number of cpus")
    return count


def _own_cgroup_paths(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup v2 path and v1 ``cpu`` controller path, from /proc/self/cgroup."""
    v2: str | None = None
    v1: str | None = None
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hier, controllers, path = parts
        if controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v2, v1


def _quota_from_files(quota_text: str, period_text: str) -> float | None:
    quota_text, period_text = quota_text.strip(), period_text.strip()
    if quota_text in ("max", "-1", ""):
        return None
    quota, period = int(quota_text), int(period_text)
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def cgroup_cpu_limit(
    root: Path = _CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``1.5``), or ``None`` if unlimited.

    *root* and *proc_cgroup* exist so tests can point at a fake hierarchy.  Malformed files
    count as "no limit": a wrong guess must never make procly refuse to start.
    """
    v2, v1 = _own_cgroup_paths(proc_cgroup)
    candidates: list[tuple[Path, Path | None]] = []
    if v2 is not None:
        for base in (root / v2.lstrip("/"), root):
            candidates.append((base / "cpu.max", None))
    if v1 is not None:
        for base in (root / "cpu" / v1.lstrip("/"), root / "cpu", root / "cpu,cpuacct"):
            candidates.append((base / "cpu.cfs_quota_us", base / "cpu.cfs_period_us"))
    for first, second in candidates:
        try:
            if second is None:
                fields = first.read_text().split()
                limit = _quota_from_files(fields[0], fields[1] if len(fields) > 1 else "100000")
            else:
                limit = _quota_from_files(first.read_text(), second.read_text())
        except (OSError, ValueError, IndexError):
            continue
        return limit
    return None


def usable_cpu_count() -> int:
    """The number of CPUs this process may use: at least 1, at most :func:`cpu_count`."""
    count = os.cpu_count() or 1
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            count = min(count, len(affinity(0)))
        except OSError:
            pass
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, math.ceil(limit))
    return max(1, count)
