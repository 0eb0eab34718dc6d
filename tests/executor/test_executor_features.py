"""procly's executor extras: ``map(progress=)``, insights, worker state and exit hooks,
and the remote traceback with the failing call's arguments (every start method)."""

from __future__ import annotations

import functools
import gc
import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import procly
from procly.futures import ProcessPoolExecutor


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def fail(x: object, **kwargs: object) -> None:
    raise KeyError("rejected")


def fail_on_3(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def count(state: dict[str, Any], *args: int, **kwargs: int) -> tuple[int, Any]:
    state["n"] = state.get("n", 0) + 1
    return state["n"], state.get("init")


def fill_state(state: dict[str, Any], value: Any) -> None:
    state["init"] = value


def mark_exit(folder: str, state: dict[str, Any]) -> None:
    Path(folder, str(os.getpid())).write_text(str(state.get("n", 0)))


def broken_hook(state: dict[str, Any]) -> None:
    raise RuntimeError("hook failed")


def bar(buf: io.StringIO) -> dict[str, Any]:
    return {"file": buf, "bar_format": "{n}/{total}", "mininterval": 0}


def last_count(buf: io.StringIO) -> str:
    return buf.getvalue().replace("\n", "\r").rstrip("\r").rsplit("\r", 1)[-1].strip()


def executor(start_method: str, **kwargs: Any) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(2, mp_context=procly.get_context(start_method), **kwargs)


def test_map_progress_counts_items_and_closes(start_method: str) -> None:
    with executor(start_method) as ex:
        buf = io.StringIO()
        assert list(ex.map(add, range(40), range(100), progress=bar(buf))) == [
            2 * i for i in range(40)
        ]
        assert last_count(buf) == "40/40" and buf.getvalue().endswith("\n")
        buf = io.StringIO()
        with pytest.raises(ValueError, match="three"):
            list(ex.map(fail_on_3, range(10), progress=bar(buf)))
        assert buf.getvalue().endswith("\n")  # closed although the map failed
        buf = io.StringIO()
        it = ex.map(square, iter(range(10_000)), chunksize=10, progress=bar(buf))
        assert next(it) == 0
        del it  # the caller stops iterating
        gc.collect()
        assert buf.getvalue().endswith("\n")
        with pytest.raises(TypeError, match="progress must be"):
            ex.map(square, [1], progress=[1])  # type: ignore[arg-type]


def test_map_progress_without_tqdm(start_method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with executor(start_method) as ex:
        with pytest.raises(ImportError, match=r"pip install procly\[progress\]"):
            ex.map(square, [1], progress=True)
        assert list(ex.map(square, [2])) == [4]


def test_insights(start_method: str) -> None:
    with executor(start_method, insights=True) as ex:
        assert ex.submit(square, 2).result(30) == 4
        assert list(ex.map(square, range(10), chunksize=5)) == [x * x for x in range(10)]
        assert any(w.alive for w in ex.insights().workers)
    info = ex.insights()
    assert info.tasks == 3 and info.failed == 0
    assert info.workers and not any(w.alive for w in info.workers)
    assert "total" in str(info)
    with executor(start_method) as plain, pytest.raises(ValueError, match="insights=True"):
        plain.insights()


def test_worker_state_and_exit_hook(start_method: str, tmp_path: Path) -> None:
    hook = functools.partial(mark_exit, str(tmp_path))
    with ProcessPoolExecutor(
        1,
        mp_context=procly.get_context(start_method),
        worker_state=True,
        initializer=fill_state,
        initargs=(7,),
        worker_exit=hook,
    ) as ex:
        assert ex.submit(count).result(30) == (1, 7)
        assert ex.submit(count, 1, k=2).result(30) == (2, 7)
        assert [n for n, _ in ex.map(count, range(3), range(3))] == [3, 4, 5]
    marks = {f.name: f.read_text() for f in tmp_path.iterdir()}
    assert list(marks.values()) == ["5"]  # shutdown ran the hook with the state


def test_exit_hook_that_raises_warns(start_method: str) -> None:
    ex = executor(start_method, worker_state=True, worker_exit=broken_hook)
    assert ex.submit(count).result(30) == (1, None)
    with pytest.warns(RuntimeWarning, match="RuntimeError: hook failed"):
        ex.shutdown(wait=True)


def test_options_are_validated() -> None:
    with pytest.raises(TypeError, match="worker_state"):
        ProcessPoolExecutor(1, worker_state="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="worker_exit"):
        ProcessPoolExecutor(1, worker_exit=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="insights"):
        ProcessPoolExecutor(1, insights=None)  # type: ignore[arg-type]


def test_remote_traceback_shows_the_call(start_method: str) -> None:
    with executor(start_method) as ex:
        with pytest.raises(KeyError) as info:
            ex.submit(fail, "x" * 1000, flag=True).result(30)
        text = str(info.value.__cause__)
        assert "Traceback (most recent call last)" in text and "raise KeyError(\"rejected\")" in text
        assert "in task: fail called with ('xxx" in text and "flag=True" not in text
        assert "..." in text and "x" * 400 not in text  # truncated
        with pytest.raises(KeyError) as info:
            list(ex.map(fail, [1, 2], chunksize=2))
        assert "mapped over a chunk of 2 items, first [(1,), (2,)]" in str(info.value.__cause__)
