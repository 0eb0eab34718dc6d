"""Smoke test of the ``queues`` benchmark section: every runner really moves its items
(tiny sizes; speed is measured by ``python -m procly bench``, never in tests)."""

from __future__ import annotations

import pytest

from procly._bench import _queues


def test_cases_are_well_formed() -> None:
    cases = _queues.cases(quick=True)
    assert [c.metric for c in cases] == ["rate"] * 5
    for case in cases:
        assert set(case.runners) == {"procly", "stdlib", "faster-fifo"}


@pytest.mark.parametrize("who", ["procly", "stdlib", "faster-fifo"])
@pytest.mark.parametrize(("producers", "consumers", "batch"), [(1, 1, 0), (2, 2, 0), (1, 1, 10)])
def test_message_runners_move_every_item(who: str, producers: int, consumers: int, batch: int) -> None:
    if who == "faster-fifo":
        pytest.importorskip("faster_fifo")
    rate = _queues._messages(who, producers, consumers, 200, batch)()
    assert rate > 0


@pytest.mark.parametrize("warm", [0, 2])
def test_array_runner_checks_what_arrives(warm: int) -> None:
    assert _queues._arrays("procly", 1, warm)() > 0
