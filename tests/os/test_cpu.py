"""CPU counting: affinity and cgroup v1/v2 quotas (fake hierarchies)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import procly
from procly._os import _cpu


def _fake(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    pc = tmp_path / "proc_cgroup"
    pc.write_text(proc_cgroup)
    return root, pc


@pytest.mark.parametrize(
    ("proc_cgroup", "files", "expected"),
    [
        ("0::/app\n", {"app/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/app\n", {"app/cpu.max": "max 100000\n"}, None),
        ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),
        (
            "4:cpu,cpuacct:/docker/x\n",
            {
                "cpu/docker/x/cpu.cfs_quota_us": "50000\n",
                "cpu/docker/x/cpu.cfs_period_us": "100000\n",
            },
            0.5,
        ),
        (
            "4:cpu,cpuacct:/\n",
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            None,
        ),
        ("0::/app\n", {"app/cpu.max": "garbage\n"}, None),
        ("0::/app\n", {}, None),
        ("not a cgroup file", {}, None),
    ],
)
def test_cgroup_limit(
    tmp_path: Path, proc_cgroup: str, files: dict[str, str], expected: float | None
) -> None:
    root, pc = _fake(tmp_path, proc_cgroup, files)
    assert _cpu.cgroup_cpu_limit(root, pc) == expected


def test_missing_proc_file(tmp_path: Path) -> None:
    assert _cpu.cgroup_cpu_limit(tmp_path, tmp_path / "absent") is None


def test_usable_cpu_count_bounds() -> None:
    usable = procly.usable_cpu_count()
    assert 1 <= usable <= procly.cpu_count() == os.cpu_count()
    if hasattr(os, "sched_getaffinity"):
        assert usable <= len(os.sched_getaffinity(0))


def test_usable_cpu_count_applies_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cpu, "cgroup_cpu_limit", lambda: 0.2)
    assert _cpu.usable_cpu_count() == 1


def test_affinity_respected_in_child() -> None:
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no affinity API")
    from _support.subproc import run_in_subprocess

    out = run_in_subprocess(
        """
        import os, procly
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        print(procly.usable_cpu_count())
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_cpu_count_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    with pytest.raises(NotImplementedError):
        _cpu.cpu_count()
