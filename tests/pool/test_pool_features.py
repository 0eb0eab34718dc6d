"""procly's Pool extras: progress bars, insights, worker state and exit hooks, tracebacks.

Every test runs under the three start methods.  Progress bars write to an
:class:`io.StringIO` and the assertions read the final count, never timing.
"""

from __future__ import annotations

import functools
import gc
import io
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import procly
from procly.pool import Pool, ThreadPool

#: A bar format that prints only the counts, so the final line is exact.
_FMT = "{n}/{total}"


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def fail(x: object, y: object = None) -> None:
    raise ValueError(f"bad {x}")


def fail_on_3(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def die() -> None:
    os._exit(3)


def nap(seconds: float) -> float:
    time.sleep(seconds)  # the work being measured, not synchronisation
    return seconds


def count(state: dict[str, Any], x: int) -> tuple[int, int, Any]:
    state["n"] = state.get("n", 0) + 1
    return x, state["n"], state.get("init")


def count_pair(state: dict[str, Any], a: int, b: int) -> tuple[int, int]:
    state["n"] = state.get("n", 0) + 1
    return a + b, state["n"]


def count_kw(state: dict[str, Any], a: int, *, b: int = 0) -> tuple[int, int]:
    state["n"] = state.get("n", 0) + 1
    return a + b, state["n"]


def fill_state(state: dict[str, Any], value: Any) -> None:
    state["init"] = value


def fail_with_state(state: dict[str, Any], x: object) -> None:
    raise ValueError(f"bad {x}")


def mark_exit(folder: str, *state: dict[str, Any]) -> None:
    """``worker_exit`` hook: one file per exiting worker, holding its task count."""
    n = state[0].get("n", 0) if state else -1
    Path(folder, str(os.getpid())).write_text(str(n))


def pid_with_state(state: dict[str, Any]) -> int:
    return os.getpid()


def broken_hook() -> None:
    raise RuntimeError("hook failed")


def bar(buf: io.StringIO, **extra: Any) -> dict[str, Any]:
    return {"file": buf, "bar_format": _FMT, "mininterval": 0, **extra}


def last_count(buf: io.StringIO) -> str:
    """The bar's last rendering (``n/total``)."""
    return buf.getvalue().replace("\n", "\r").rstrip("\r").rsplit("\r", 1)[-1].strip()


def closed(buf: io.StringIO) -> bool:
    # tqdm ends a closed bar (leave=True) with a newline; an open one never does.
    return buf.getvalue().endswith("\n")


@pytest.fixture
def pool(start_method: str) -> Iterator[Pool]:
    with procly.get_context(start_method).Pool(2) as p:
        yield p


# -- progress ------------------------------------------------------------------------------
def test_progress_counts_items_of_every_map_flavour(pool: Pool) -> None:
    buf = io.StringIO()
    assert pool.map(square, range(100), chunksize=7, progress=bar(buf)) == [
        x * x for x in range(100)
    ]
    assert last_count(buf) == "100/100" and closed(buf)
    buf = io.StringIO()
    assert pool.map_async(square, range(10), progress=bar(buf)).get(30) == [
        x * x for x in range(10)
    ]
    assert last_count(buf) == "10/10" and closed(buf)
    buf = io.StringIO()
    assert pool.starmap(add, [(i, i) for i in range(30)], progress=bar(buf)) == [
        2 * i for i in range(30)
    ]
    assert last_count(buf) == "30/30" and closed(buf)
    buf = io.StringIO()
    assert pool.starmap_async(add, [(1, 2)], progress=bar(buf)).get(30) == [3]
    assert last_count(buf) == "1/1" and closed(buf)
    buf = io.StringIO()
    assert list(pool.imap(square, range(200), progress=bar(buf))) == [
        x * x for x in range(200)
    ]
    assert last_count(buf) == "200/200" and closed(buf)
    buf = io.StringIO()
    got = pool.imap_unordered(square, (x for x in range(50)), chunksize=3, progress=bar(buf))
    assert sorted(got) == [x * x for x in range(50)]
    assert last_count(buf) == "50/None" and closed(buf)  # a generator: no total
    buf = io.StringIO()
    assert pool.map(square, [], progress=bar(buf)) == []
    assert closed(buf)


def test_progress_default_bar_has_rate_and_eta(pool: Pool) -> None:
    buf = io.StringIO()
    pool.map(square, range(20), progress={"file": buf, "desc": "squares"})
    text = buf.getvalue()
    assert "squares" in text and "20/20" in text and "item/s" in text and "<" in text


def test_progress_works_on_a_thread_pool() -> None:
    with ThreadPool(3) as tp:
        buf = io.StringIO()
        assert tp.map(square, range(60), chunksize=4, progress=bar(buf)) == [
            x * x for x in range(60)
        ]
        assert last_count(buf) == "60/60" and closed(buf)
        buf = io.StringIO()
        assert sorted(tp.imap_unordered(square, range(25), progress=bar(buf))) == [
            x * x for x in range(25)
        ]
        assert last_count(buf) == "25/25" and closed(buf)


def test_progress_bar_closes_when_the_map_fails(pool: Pool) -> None:
    buf = io.StringIO()
    with pytest.raises(ValueError, match="three"):
        pool.map(fail_on_3, range(10), chunksize=1, progress=bar(buf))
    assert closed(buf)
    buf = io.StringIO()
    with pytest.raises(ValueError, match="three"):
        list(pool.imap(fail_on_3, range(10), progress=bar(buf)))
    gc.collect()
    assert closed(buf)


def test_progress_bar_closes_when_the_caller_stops_iterating(pool: Pool) -> None:
    buf = io.StringIO()
    it = pool.imap(square, range(10_000), chunksize=10, progress=bar(buf))
    assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
    assert not closed(buf)
    it.close()
    assert closed(buf)
    buf = io.StringIO()
    it2 = pool.imap_unordered(square, iter(range(10_000)), chunksize=10, progress=bar(buf))
    next(it2)
    del it2
    gc.collect()
    assert closed(buf)


def test_progress_rejects_bad_values(pool: Pool) -> None:
    with pytest.raises(TypeError, match="progress must be"):
        pool.map(square, [1], progress="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress must be"):
        pool.imap(square, [1], progress=3)  # type: ignore[arg-type]


def test_progress_without_tqdm_names_the_extra(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with pytest.raises(ImportError, match=r"pip install procly\[progress\]"):
        pool.map(square, [1, 2], progress=True)
    with pytest.raises(ImportError, match=r"pip install procly\[progress\]"):
        pool.imap(square, [1, 2], progress=True)
    assert pool.map(square, [1, 2], progress=False) == [1, 4]  # the pool is still fine
    assert list(pool.imap(square, [3])) == [9]


# -- insights ------------------------------------------------------------------------------
def test_insights_account_for_the_workers_time(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with ctx.Pool(2, insights=True) as p:
        assert p.apply(square, (3,)) == 9
        live = p.insights()
        assert live.workers and any(w.alive for w in live.workers)
        assert p.map(nap, [0.05] * 6, chunksize=1) == [0.05] * 6
        with pytest.raises(ValueError):
            p.apply(fail, (1,))
        p.close()
        p.join()
        info = p.insights()
    assert len(info.workers) == 2
    assert all(not w.alive for w in info.workers)
    assert info.tasks == 8 and info.failed == 1
    assert info.working >= 0.3  # six naps of 0.05 s
    assert all(w.starting > 0 for w in info.workers)
    assert info.waiting > 0 and info.serializing > 0
    assert info.working == pytest.approx(sum(w.working for w in info.workers))
    table = str(info)
    assert "starting" in table and "serializing" in table and "total" in table
    assert all(str(w.pid) in table for w in info.workers)


def test_insights_keep_the_history_of_lost_and_retired_workers(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with ctx.Pool(1, maxtasksperchild=2, insights=True) as p:
        first = p.apply(os.getpid)
        assert p.apply(os.getpid) == first  # second task: the worker retires
        crashed = p.apply(os.getpid)
        with pytest.raises(procly.WorkerCrashedError):
            p.apply(die)
        assert p.apply(square, (4,)) == 16
        info = p.insights()
    by_pid = {w.pid: w for w in info.workers}
    assert not by_pid[first].alive and by_pid[first].tasks == 2
    assert not by_pid[crashed].alive and by_pid[crashed].tasks == 1  # its last batch is lost
    # the worker that ran square, and under fork a started spare: alive
    others = [w for w in info.workers if w.pid not in (first, crashed)]
    assert others and all(w.alive for w in others)
    assert sum(w.tasks for w in others) == 1


def test_insights_are_opt_in(pool: Pool) -> None:
    with pytest.raises(ValueError, match="insights=True"):
        pool.insights()
    with ThreadPool(1) as tp, pytest.raises(ValueError, match="insights"):
        tp.insights()


# -- worker state and exit hooks -----------------------------------------------------------
def test_worker_state_is_kept_across_tasks(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with ctx.Pool(1, worker_state=True, initializer=fill_state, initargs=("ready",)) as p:
        assert p.apply(count, (10,)) == (10, 1, "ready")
        assert p.apply_async(count, (11,)).get(30) == (11, 2, "ready")
        assert [n for _, n, _ in p.map(count, range(5))] == [3, 4, 5, 6, 7]
        assert p.starmap(count_pair, [(1, 2), (3, 4)]) == [(3, 8), (7, 9)]
        assert [n for _, n, _ in p.imap(count, range(3))] == [10, 11, 12]
        assert sorted(n for _, n, _ in p.imap_unordered(count, range(2))) == [13, 14]
        assert p.apply(count_kw, (1,), {"b": 2}) == (3, 15)


def test_worker_state_shows_the_users_function_in_tracebacks(start_method: str) -> None:
    with (
        procly.get_context(start_method).Pool(1, worker_state=True) as p,
        pytest.raises(ValueError) as info,
    ):
        p.apply(fail_with_state, ("arg",))
    assert "in task: fail_with_state called with ('arg',)" in str(info.value.__cause__)


def test_worker_exit_runs_on_close_and_retirement(start_method: str, tmp_path: Path) -> None:
    ctx = procly.get_context(start_method)
    hook = functools.partial(mark_exit, str(tmp_path))
    p = ctx.Pool(1, maxtasksperchild=2, worker_state=True, worker_exit=hook)
    try:
        retired = p.apply(pid_with_state)
        assert p.apply(count, (0,)) == (0, 1, None)  # the worker retires after this one
        current = p.apply(pid_with_state)
    finally:
        p.close()
        p.join()
    marks = {int(f.name): f.read_text() for f in tmp_path.iterdir()}
    assert retired != current
    # each hook saw its own worker's state (under fork a spare worker, started after the
    # retirement and never used, exits through the hook as well)
    assert marks[retired] == "1" and marks[current] == "0"
    assert len(marks) <= 3 and set(marks.values()) == {"0", "1"}


def test_worker_exit_does_not_run_after_terminate(start_method: str, tmp_path: Path) -> None:
    hook = functools.partial(mark_exit, str(tmp_path))
    with procly.get_context(start_method).Pool(1, worker_exit=hook) as p:
        assert p.apply(square, (2,)) == 4
    assert not list(tmp_path.iterdir())  # __exit__ terminates: the worker was killed


def test_worker_exit_that_raises_warns_and_does_not_hang(start_method: str) -> None:
    p = procly.get_context(start_method).Pool(2, worker_exit=broken_hook)
    assert p.map(square, range(4)) == [0, 1, 4, 9]
    with pytest.warns(RuntimeWarning, match="worker_exit hook raised") as record:
        p.close()
        p.join()
    assert any("RuntimeError: hook failed" in str(w.message) for w in record)


def test_options_are_validated(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with pytest.raises(TypeError, match="worker_state"):
        ctx.Pool(1, worker_state=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="insights"):
        ctx.Pool(1, insights="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="worker_exit"):
        ctx.Pool(1, worker_exit=3)  # type: ignore[arg-type]


# -- remote tracebacks ---------------------------------------------------------------------
def test_remote_traceback_is_chained_with_the_arguments(pool: Pool) -> None:
    with pytest.raises(ValueError) as info:
        pool.apply(fail, (), {"x": 5, "y": "z" * 500})
    text = str(info.value.__cause__)
    assert "Traceback (most recent call last)" in text and 'raise ValueError(f"bad {x}")' in text
    assert "in task: fail called with (" in text and "x=5" in text
    assert "..." in text and "z" * 400 not in text  # truncated
    with pytest.raises(ValueError) as info:
        pool.starmap(fail, [(1, 2), (3, 4)], chunksize=2)
    assert "mapped over a chunk of 2 items, first [(1, 2), (3, 4)]" in str(info.value.__cause__)
