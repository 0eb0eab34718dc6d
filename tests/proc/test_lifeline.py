"""The lifeline's PR_SET_PDEATHSIG call: procly's C extension, or libc through ctypes when
procly was built without it (the behaviour itself: test_launch's SIGKILLed-parent test)."""

from __future__ import annotations

import sys

import pytest

from procly._proc._lifeline import Lifeline

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def test_pdeathsig_through_the_c_extension() -> None:
    pytest.importorskip("procly._os._native")
    from procly._os._native import set_pdeathsig

    lifeline = Lifeline()
    assert lifeline.load_prctl()
    assert lifeline._prctl is set_pdeathsig
    assert lifeline._prctl(0) == 0  # 0 clears the death signal of this (test) process


def test_pdeathsig_through_ctypes_without_the_c_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    import procly._os

    monkeypatch.setitem(sys.modules, "procly._os._native", None)  # the import fails
    monkeypatch.delattr(procly._os, "_native", raising=False)
    lifeline = Lifeline()
    assert lifeline.load_prctl()
    assert getattr(lifeline._prctl, "__name__", "") == "<lambda>"  # ctypes' prctl
    assert lifeline._prctl(0) == 0
