"""Finalize (exit priorities, GC, cancel), is_exiting, after-fork hooks, logger."""

from __future__ import annotations

import gc

import pytest

from _support.subproc import run_in_subprocess
from procly import util


class _Obj:
    pass


def test_runs_when_object_dies() -> None:
    calls: list[str] = []
    obj = _Obj()
    fin = util.Finalize(obj, calls.append, args=("gone",))
    assert fin.still_active()
    del obj
    gc.collect()
    assert calls == ["gone"]
    assert not fin.still_active()
    assert fin() is None  # at most once


def test_call_and_cancel() -> None:
    calls: list[int] = []
    obj = _Obj()
    fin = util.Finalize(obj, lambda x, y=0: calls.append(x + y) or 42, args=(1,), kwargs={"y": 2})
    assert "callback=<lambda>" in repr(fin)
    assert fin() == 42
    assert calls == [3]
    assert repr(fin) == "<Finalize object, dead>"
    fin2 = util.Finalize(obj, calls.append, args=(9,))
    fin2.cancel()
    assert not fin2.still_active()
    assert fin2() is None
    assert calls == [3]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="Without object, exitpriority cannot be None"):
        util.Finalize(None, print)
    with pytest.raises(TypeError, match="Exitpriority"):
        util.Finalize(None, print, exitpriority="high")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        util.Finalize(1, print)  # ints cannot be weakly referenced


def test_exit_order_and_children_at_exit() -> None:
    out = run_in_subprocess(
        """
        from procly import util
        def say(text):
            print(text, "exiting" if util.is_exiting() else "not exiting", flush=True)
        util.Finalize(None, say, ("p0-first",), exitpriority=0)
        util.Finalize(None, say, ("p10",), exitpriority=10)
        util.Finalize(None, say, ("p0-second",), exitpriority=0)
        util.Finalize(None, say, ("neg",), exitpriority=-5)
        cancelled = util.Finalize(None, say, ("cancelled",), exitpriority=100)
        cancelled.cancel()
        assert not util.is_exiting()
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == [
        "p10 exiting",
        "p0-second exiting",
        "p0-first exiting",
        "neg exiting",
    ]


def test_finalizer_not_run_in_forked_child() -> None:
    out = run_in_subprocess(
        """
        import procly
        from procly import util
        util.Finalize(None, print, ("parent finalizer",), exitpriority=1)
        def child():
            print("child ran", flush=True)
        if __name__ == "__main__":
            p = procly.get_context("fork").Process(target=child); p.start(); p.join()
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split().count("finalizer") == 1
    assert "child ran" in out.stdout


def test_log_to_stderr() -> None:
    out = run_in_subprocess(
        """
        import logging, procly
        logger = procly.log_to_stderr(logging.INFO)
        assert procly.log_to_stderr() is logger
        logger.info("hello %s", "there")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("[INFO/MainProcess] hello there") == 1
