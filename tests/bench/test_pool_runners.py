"""Smoke test of the ``pool`` benchmark section's recovery runners: they really lose the
tasks they kill and only those (tiny sizes; speed is measured by ``python -m procly
bench``, never in tests)."""

from __future__ import annotations

import pytest

from procly._bench import _pool


def test_recovery_cases_have_their_undisturbed_baseline() -> None:
    cases = [c for c in _pool.cases(quick=True) if c.name.startswith("recovery")]
    assert [c.name.split(":")[0] for c in cases] == ["recovery (fork)", "recovery (forkserver)"]
    for case in cases:
        assert case.baseline == "procly-undisturbed" and case.target == 1.5
        assert {"procly", "procly-undisturbed"} <= set(case.runners)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
@pytest.mark.parametrize("disturbed", [False, True])
def test_recovery_runner_checks_what_was_lost(method: str, disturbed: bool) -> None:
    # 400 tasks: tasks 199 and 399 kill their worker; the runner raises unless exactly
    # those two are lost
    assert _pool._recovery(400, disturbed, method)() > 0


def test_fork_floor_forks_and_reaps() -> None:
    assert _pool._fork_floor(2)() > 0
