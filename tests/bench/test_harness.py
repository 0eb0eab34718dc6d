"""The benchmark harness: interleaving, medians, ratios and targets (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from procly._bench._harness import Case, Skip, format_table, run_cases, write_json


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
