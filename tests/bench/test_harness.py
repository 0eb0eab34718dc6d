"""The benchmark harness: interleaving, medians, ratios and targets (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from procly._bench._harness import Case, Skip, format_table, import_peer, run_cases, write_json


def _counter(calls: list[str], who: str, values: list[float]) -> object:
    def runner() -> float:
        calls.append(who)
        return values[sum(1 for c in calls if c == who) - 1]

    return runner


def test_runners_are_interleaved_and_medians_compared() -> None:
    calls: list[str] = []
    case = Case(
        "t",
        "time",
        "s",
        0.8,
        {
            "procly": _counter(calls, "procly", [1.0, 3.0, 2.0]),  # type: ignore[dict-item]
            "stdlib": _counter(calls, "stdlib", [4.0, 2.0, 5.0]),  # type: ignore[dict-item]
        },
    )
    [result] = run_cases("sec", [case], repeats=3, log=lambda _: None)
    assert calls == ["procly", "stdlib"] * 3
    assert result.median("procly") == 2.0
    assert result.median("stdlib") == 4.0
    assert result.ratio == 0.5
    assert result.met is True


def test_rate_target_direction_and_missed_target() -> None:
    case = Case("r", "rate", "msg/s", 3.0, {"procly": lambda: 200.0, "stdlib": lambda: 100.0})
    [result] = run_cases("sec", [case], repeats=1, log=lambda _: None)
    assert result.ratio == 2.0
    assert result.met is False
    assert "NO" in format_table([result])


def test_skipped_and_failing_runners_are_reported_not_fatal(tmp_path: Path) -> None:
    def skip() -> float:
        raise Skip("peer not installed")

    def boom() -> float:
        raise RuntimeError("broken")

    case = Case("c", "rate", "ops/s", None, {"procly": lambda: 1.0, "peer": skip, "stdlib": boom})
    [result] = run_cases("sec", [case], repeats=2, log=lambda _: None)
    assert result.skipped == {"peer": "peer not installed", "stdlib": "failed: RuntimeError: broken"}
    assert result.ratio is None and result.met is None
    table = format_table([result])
    assert "peer not installed" in table
    out = tmp_path / "b.json"
    write_json([result], str(out), {"quick": True})
    data = json.loads(out.read_text())
    assert data["results"][0]["medians"] == {"procly": 1.0}


def test_target_against_a_named_peer_and_ratios_to_every_contender(tmp_path: Path) -> None:
    case = Case(
        "numpy",
        "time",
        "s",
        1 / 3,
        {"procly": lambda: 1.0, "stdlib": lambda: 8.0, "joblib": lambda: 4.0, "mpire": lambda: 2.0},
        baseline="joblib",
        setups={"joblib": "Parallel(n_jobs=2), loky backend"},
    )
    [result] = run_cases("pool", [case], repeats=1, log=lambda _: None)
    assert result.ratios == {"stdlib": 0.125, "joblib": 0.25, "mpire": 0.5}
    assert result.ratio == 0.25  # against the baseline, not the standard library
    assert result.met is True
    table = format_table([result])
    assert "<= 0.333x joblib" in table
    assert "joblib 0.25x, mpire 0.50x" in table
    assert "0.12x" in table  # procly/stdlib still has its own column
    assert "joblib: Parallel(n_jobs=2), loky backend" in table
    out = tmp_path / "b.json"
    write_json([result], str(out), {})
    data = json.loads(out.read_text())["results"][0]
    assert data["baseline"] == "joblib"
    assert data["ratios_procly_over"] == {"stdlib": 0.125, "joblib": 0.25, "mpire": 0.5}
    assert data["ratio_procly_over_baseline"] == 0.25
    assert data["ratio_procly_over_stdlib"] == 0.125
    assert data["target_met"] is True


def test_missing_baseline_peer_leaves_the_target_open_and_says_not_installed() -> None:
    def missing() -> float:
        return float(import_peer("procly_no_such_peer_lib", "no-such-peer"))

    case = Case(
        "c", "time", "s", 0.5, {"procly": lambda: 1.0, "stdlib": lambda: 3.0, "peer": missing}, baseline="peer"
    )
    [result] = run_cases("sec", [case], repeats=2, log=lambda _: None)
    assert result.not_installed == {"peer"}
    assert result.ratio is None and result.met is None
    assert result.ratios == {"stdlib": 1 / 3}
    table = format_table([result])
    assert "not installed" in table.splitlines()[2]
    assert "no-such-peer is not installed (pip install no-such-peer)" in table


class _Stateful:
    """A runner that keeps state between rounds (like the shm section's array hand-over)."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def __call__(self) -> float:
        self.calls.append("run")
        return 1.0

    def close(self) -> None:
        self.calls.append("close")


def test_runners_with_state_are_closed_once_their_case_is_done() -> None:
    calls: list[str] = []
    first = Case("a", "time", "s", None, {"procly": _Stateful(calls)})  # type: ignore[dict-item]
    second = Case("b", "time", "s", None, {"procly": lambda: calls.append("next") or 1.0})
    run_cases("sec", [first, second], repeats=2, log=lambda _: None)
    assert calls == ["run", "run", "close", "next", "next"]
