"""Crash-proofing, per-task timeouts and Ctrl-C, for Pool (every start method)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import Any

import pytest

import procly
from _support.subproc import process_gone, run_in_subprocess
from _support.tasks import crash_once
from procly._engine._launcher import helper_supported
from procly.errors import BrokenProcessPool, TaskTimeoutError, WorkerCrashedError


def square(x: int) -> int:
    return x * x


def die_exit(code: int) -> None:
    os._exit(code)


def die_kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_segfault() -> None:
    import faulthandler

    faulthandler.disable()  # pytest's handler, inherited by a forked worker, would dump a traceback
    ctypes.string_at(0)


def sleep_forever(*_: Any) -> None:
    time.sleep(3600)


class DiesWhenUnpickled:
    def __reduce__(self) -> Any:
        return (die_exit, (7,))


class DiesWhenPickled:
    def __reduce__(self) -> Any:
        os._exit(9)


def return_dies_when_pickled() -> DiesWhenPickled:
    return DiesWhenPickled()


def raise_memory_error() -> None:
    raise MemoryError("simulated")


def bad_init() -> None:
    raise RuntimeError("init failed")


@pytest.mark.parametrize(
    ("fn", "args", "exitcode"),
    [
        (die_exit, (3,), 3),
        (die_kill, (), -signal.SIGKILL),
        (die_segfault, (), -signal.SIGSEGV),
        (square, (DiesWhenUnpickled(),), 7),
        (return_dies_when_pickled, (), 9),
    ],
    ids=["os._exit", "SIGKILL", "segfault", "unpickling-args", "pickling-result"],
)
def test_crash_fails_only_that_task(start_method: str, fn: Any, args: Any, exitcode: int) -> None:
    with procly.get_context(start_method).Pool(2) as pool:
        before = [pool.apply_async(square, (i,)) for i in range(10)]
        bad = pool.apply_async(fn, args)
        after = [pool.apply_async(square, (i,)) for i in range(10)]
        with pytest.raises(WorkerCrashedError) as info:
            bad.get(30)
        err = info.value
        assert isinstance(err, BrokenProcessPool)  # what stdlib users catch
        assert err.exitcode == exitcode
        assert err.pid is not None and str(err.pid) in str(err)
        assert [r.get(30) for r in before + after] == [i * i for i in range(10)] * 2
        assert pool.map(square, range(8)) == [i * i for i in range(8)]


def test_memory_error_in_task_is_a_normal_exception(start_method: str) -> None:
    with procly.get_context(start_method).Pool(1) as pool:
        with pytest.raises(MemoryError):
            pool.apply(raise_memory_error)
        assert pool.apply(square, (3,)) == 9


def test_crash_inside_map_chunk_fails_the_map(start_method: str) -> None:
    with procly.get_context(start_method).Pool(2) as pool:
        with pytest.raises(WorkerCrashedError):
            pool.map(die_exit, [1, 2, 3])
        assert pool.map(square, range(4)) == [0, 1, 4, 9]


def test_per_task_timeout_kills_and_replaces(start_method: str) -> None:
    with procly.get_context(start_method).Pool(2) as pool:
        slow = pool.apply_async(sleep_forever, timeout=0.3)
        quick = [pool.apply_async(square, (i,)) for i in range(20)]
        t0 = time.monotonic()
        with pytest.raises(TaskTimeoutError) as info:
            slow.get(30)
        assert time.monotonic() - t0 < 20  # bound only
        assert isinstance(info.value, TimeoutError)  # builtin, as documented
        assert [r.get(30) for r in quick] == [i * i for i in range(20)]
        assert pool.apply(square, (5,)) == 25


def test_pool_default_task_timeout(start_method: str) -> None:
    with procly.get_context(start_method).Pool(1, task_timeout=1.5) as pool:  # room for a fresh worker to import this module
        with pytest.raises(TaskTimeoutError):
            pool.apply(sleep_forever)
        with pytest.raises(TaskTimeoutError):
            pool.map(sleep_forever, [1])
        assert pool.apply(square, (2,)) == 4


def test_failing_initializer_breaks_the_pool(start_method: str) -> None:
    with procly.get_context(start_method).Pool(2, initializer=bad_init) as pool:
        # Either the call is accepted and fails, or the pool already knows it is broken.
        with pytest.raises(BrokenProcessPool) as info:
            pool.apply_async(square, (1,)).get(30)
        assert isinstance(info.value.__cause__, RuntimeError)
        with pytest.raises(BrokenProcessPool):
            pool.apply_async(square, (1,))


def test_many_kills_during_map_every_other_result_arrives() -> None:
    ctx = procly.get_context("fork")
    with ctx.Pool(2) as pool:
        results = [pool.apply_async(die_kill if i % 50 == 49 else square, (i,) if i % 50 != 49 else ()) for i in range(500)]
        crashed = 0
        for i, r in enumerate(results):
            if i % 50 == 49:
                with pytest.raises(WorkerCrashedError):
                    r.get(60)
                crashed += 1
            else:
                assert r.get(60) == i * i
        assert crashed == 10


SIGINT_SCRIPT = """
import os, sys, time
import procly

def sleep_forever(_):
    time.sleep(3600)

if __name__ == "__main__":
    pool = procly.get_context(sys.argv[1]).Pool(2)
    try:
        r = pool.map_async(sleep_forever, range(2), chunksize=1)
        print("PIDS", *[s.proc.pid for s in pool._engine._sup.slots], flush=True)
        r.get()
    except KeyboardInterrupt:
        pool.terminate()
        print("INTERRUPTED", flush=True)
        sys.exit(0)
"""



def test_ctrl_c_stops_pool_and_leaves_no_worker(start_method: str, tmp_path: Any) -> None:
    import subprocess

    from _support.subproc import SRC

    script = tmp_path / "ctrlc.py"
    script.write_text(SIGINT_SCRIPT)
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen(
        [sys.executable, str(script), start_method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PIDS"), (line, proc.stderr.read() if proc.stderr else "")
        pids = [int(p) for p in line.split()[1:]]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert "INTERRUPTED" in out, err
        assert proc.returncode == 0
        deadline = time.monotonic() + 10
        while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(process_gone(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unterminated_pool_workers_die_at_interpreter_exit() -> None:
    result = run_in_subprocess(
        """
        import procly, time
        def f(x):
            return x
        pool = procly.get_context("fork").Pool(2)
        print(pool.apply(abs, (-3,)), flush=True)
        print("PIDS", *[s.proc.pid for s in pool._engine._sup.slots], flush=True)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "3" in result.stdout
    pids = [int(p) for p in result.stdout.split("PIDS")[1].split()]
    deadline = time.monotonic() + 10
    while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(process_gone(p) for p in pids)


def nested_sum(n: int) -> int:
    ctx = procly.get_context("fork")
    with ctx.Pool(2) as inner:
        return sum(inner.map(square, range(n)))


def nest_forever(depth: int) -> int:
    with procly.get_context("fork").Pool(1) as inner:
        return inner.apply(nest_forever, (depth + 1,))


def test_nested_pools_and_depth_limit(start_method: str) -> None:
    with procly.get_context(start_method).Pool(2) as pool:
        assert pool.map(nested_sum, [3, 4]) == [5, 14]
        with pytest.raises(RuntimeError, match="nested"):
            pool.apply(nest_forever, (1,))


def test_retries_rerun_a_crashed_task(start_method: str, tmp_path: Any) -> None:
    ctx = procly.get_context(start_method)
    with ctx.Pool(1, retries=1) as pool:
        assert pool.apply(crash_once, (str(tmp_path / "a"),)) == "second try"
        with pytest.raises(WorkerCrashedError, match="after 1 retries"):
            pool.apply(die_exit, (5,))
    with ctx.Pool(1) as pool, pytest.raises(WorkerCrashedError):
        pool.apply(crash_once, (str(tmp_path / "b"),))
    with pytest.raises(ValueError):
        ctx.Pool(1, retries=-1)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_functions_of_python_dash_c_main_travel_by_value(method: str) -> None:
    result = run_in_subprocess(
        f"""
        import procly
        def triple(x):
            return 3 * x
        with procly.get_context({method!r}).Pool(2) as pool:
            print(pool.map(triple, range(4)), pool.apply(lambda: "lam"))
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "[0, 3, 6, 9] lam" in result.stdout


def test_spare_worker_replaces_the_next_crash(start_method: str) -> None:
    """Where replacements come from a fork helper (under fork; every start method on
    Linux), a crash leaves a started spare; the next crash promotes it at once."""
    expected = 1 if helper_supported(start_method) else 0
    with procly.get_context(start_method).Pool(2) as pool:
        engine = pool._engine
        assert engine is not None and engine._sup.spares == []  # none before any loss
        with pytest.raises(WorkerCrashedError):
            pool.apply(die_exit, (3,))
        # the spare is forked right after the next hand-out, so before this result arrives
        assert pool.apply(square, (3,)) == 9
        assert len(engine._sup.spares) == expected
        spare_pids = [s.proc.pid for s in engine._sup.spares]
        with pytest.raises(WorkerCrashedError):
            pool.apply(die_kill)
        assert pool.map(square, range(20), chunksize=1) == [x * x for x in range(20)]
        serving = [s.proc.pid for s in engine._sup.slots]
        assert len(serving) == 2 and all(pid in serving for pid in spare_pids)
        assert len(engine._sup.spares) == expected
