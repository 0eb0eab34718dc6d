"""Smoke test of the ``shm`` benchmark section's array hand-over (tiny sizes; speed is
measured by ``python -m procly bench``, never in tests)."""

from __future__ import annotations

import pytest

from procly._bench import _shm
from procly._bench._harness import Case, run_cases


def test_array_hand_over_keeps_no_shared_array_and_closes_its_children() -> None:
    pytest.importorskip("numpy")
    runners = {who: _shm._ArrayHandOver(who, 1 << 20) for who in ("procly", "stdlib")}
    case = Case("hand-over", "time", "s", None, dict(runners))
    [result] = run_cases("shm", [case], repeats=2, log=lambda _: None)
    assert result.skipped == {} and len(result.samples["procly"]) == 2
    # the children were stopped and the arrays dropped when the case ended (a forked
    # child of either contender must never hold procly's array: it is made per call)
    assert all(r.state is None for r in runners.values())
