"""Unit tests of the engine's feature modules: ``_progress``, ``_insights`` and the new
``PoolOptions`` checks (no worker processes, except one fresh interpreter)."""

from __future__ import annotations

import io
import pickle

import pytest

from _support.subproc import run_in_subprocess
from procly._engine._insights import InsightsLog, PoolInsights, WorkerInsights
from procly._engine._messages import ExitHookFailed
from procly._engine._options import PoolOptions
from procly._engine._progress import check_progress, progress_bar, total_of
from procly._engine._remote_tb import capture


def test_check_progress() -> None:
    for ok in (True, False, None, {}, {"desc": "x"}):
        assert check_progress(ok) is ok  # type: ignore[arg-type]
    for bad in ("yes", 1, [("desc", "x")]):
        with pytest.raises(TypeError, match="progress must be"):
            check_progress(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str keys"):
        check_progress({1: 2})


def test_total_of() -> None:
    assert total_of([1, 2, 3]) == 3
    assert total_of(range(5), "ab") == 2  # zip stops at the shortest
    assert total_of(iter([1])) is None
    assert total_of() is None


def test_progress_bar_counts_and_closes_once() -> None:
    assert progress_bar(False, 10) is None and progress_bar(None, 10) is None
    buf = io.StringIO()
    bar = progress_bar({"file": buf, "bar_format": "{n}/{total}", "mininterval": 0}, 5)
    assert bar is not None and not bar.closed
    bar.update(2)
    bar.update(3)
    bar.close()
    bar.close()  # idempotent
    bar.update(1)  # ignored once closed
    assert bar.closed
    assert buf.getvalue().rstrip("\n").rsplit("\r", 1)[-1] == "5/5"
    empty = progress_bar({"file": io.StringIO()}, None)  # an empty dict of options: a bar
    assert empty is not None
    empty.close()


def test_progress_off_never_imports_tqdm() -> None:
    done = run_in_subprocess(
        """
        import sys
        import procly
        from procly.futures import ProcessPoolExecutor
        if __name__ == "__main__":
            with procly.get_context("fork").Pool(1) as p:
                assert p.map(abs, [-1], progress=False) == [1]
                assert list(p.imap(abs, [-2])) == [2]
            with ProcessPoolExecutor(1) as ex:
                assert list(ex.map(abs, [-3], progress=False)) == [3]
            print("tqdm" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def _stats(pid: int, tasks: int, final: bool = False) -> WorkerInsights:
    return WorkerInsights(pid, 0.5, 1.0, 2.0, 0.25, tasks, 1, not final)


def test_insights_log_keeps_every_worker_and_marks_the_ended() -> None:
    log = InsightsLog()
    log.record(_stats(10, 1))
    log.record(_stats(11, 3))
    log.record(_stats(10, 4))  # a newer report replaces the older one
    log.record(_stats(12, 2, final=True))  # it said it was exiting
    snap = log.snapshot([10, 12, None])
    assert [w.pid for w in snap.workers] == [10, 11, 12]
    assert [w.alive for w in snap.workers] == [True, False, False]
    assert snap.tasks == 9 and snap.failed == 3
    assert snap.working == 6.0 and snap.waiting == 3.0
    assert snap.starting == 1.5 and snap.serializing == 0.75
    lines = str(snap).splitlines()
    assert lines[0].split() == [
        "worker",
        "state",
        "starting",
        "waiting",
        "working",
        "serializing",
        "tasks",
        "failed",
    ]
    assert lines[2].split() == ["10", "alive", "0.500s", "1.000s", "2.000s", "0.250s", "4", "1"]
    assert lines[-1].split()[:3] == ["total", "1", "alive"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert str(PoolInsights(())).splitlines()[-1].split()[:2] == ["total", "0"]


def test_new_messages_pickle_compactly() -> None:
    stats = _stats(1, 2, final=True)
    assert pickle.loads(pickle.dumps(stats)) == stats
    failed = ExitHookFailed(7, capture(RuntimeError("x")))
    back = pickle.loads(pickle.dumps(failed))
    assert back.pid == 7 and isinstance(back.error.exception, RuntimeError)


def test_pool_options_check_the_new_options() -> None:
    opts = PoolOptions.build(
        processes=1,
        default_processes=1,
        worker_state=True,
        worker_exit=print,
        insights=True,
    )
    assert opts.worker_state and opts.insights and opts.worker_exit is print
    plain = PoolOptions.build(processes=1, default_processes=1)
    assert not plain.worker_state and not plain.insights and plain.worker_exit is None
    with pytest.raises(TypeError, match="worker_state must be True or False, not int"):
        PoolOptions.build(processes=1, default_processes=1, worker_state=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="insights must be True or False, not str"):
        PoolOptions.build(processes=1, default_processes=1, insights="y")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="worker_exit must be a callable or None, not int"):
        PoolOptions.build(processes=1, default_processes=1, worker_exit=3)  # type: ignore[arg-type]
