"""Worker replacement: the fork helper that forks replacements (every start method on
Linux; under ``spawn``/``forkserver`` it is itself a freshly started process).

(Crash semantics themselves are in ``test_pool_crash.py``; the leak guard checks that the
helper and every worker it forked are gone after each test.)
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import procly
from _support.subproc import process_gone, run_python
from procly.errors import TaskTimeoutError, WorkerCrashedError

#: Read by tasks: the parent changes it after the pool started (see the snapshot test).
MARK = "before"
#: The process that imported this module (tasks compare it with their own pid).
IMPORTED_BY = os.getpid()


def die_kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def parent_pid(_: Any = None) -> int:
    return os.getppid()


def own_pid(_: Any = None) -> int:
    return os.getpid()


def mark(_: Any = None) -> str:
    return MARK


def imported_here(_: Any = None) -> bool:
    return os.getpid() == IMPORTED_BY


def sleep_forever(*_: Any) -> None:
    time.sleep(3600)


def _engine(pool: Any) -> Any:
    engine = pool._engine
    assert engine is not None
    return engine


linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="spawn/forkserver pools use a fork helper on Linux only"
)


@linux_only
def test_replacements_are_forked_by_the_helper_not_the_parent(start_method: str) -> None:
    with procly.get_context(start_method).Pool(1) as pool:
        first_parent = pool.apply(parent_pid)  # us (fork, spawn) or the fork server
        assert first_parent == os.getpid() or start_method == "forkserver"
        assert _engine(pool)._sup.helper is None  # no helper before a replacement
        with pytest.raises(WorkerCrashedError, match="SIGKILL"):
            pool.apply(die_kill)
        helper = _engine(pool)._sup.helper
        assert helper is not None
        helper_pid = helper._proc.pid
        assert helper_pid != first_parent
        assert pool.apply(parent_pid) == helper_pid
        with pytest.raises(WorkerCrashedError) as info:
            pool.apply(die_kill)
        assert info.value.exitcode == -signal.SIGKILL  # reported by the helper
        assert pool.apply(parent_pid) == helper_pid  # one helper for every replacement


def test_replacements_are_copies_of_the_parent_when_the_helper_started() -> None:
    global MARK
    try:
        with procly.get_context("fork").Pool(1) as pool:
            with pytest.raises(WorkerCrashedError):
                pool.apply(die_kill)  # the helper starts here: it sees "before"
            MARK = "after"
            with pytest.raises(WorkerCrashedError):
                pool.apply(die_kill)
            assert pool.apply(mark) == "before"  # documented: not the parent's "after"
    finally:
        MARK = "before"


def test_timeouts_kill_helper_workers_and_max_tasks_per_child_uses_it(start_method: str) -> None:
    with procly.get_context(start_method).Pool(1, maxtasksperchild=1) as pool:
        pids = [pool.apply(own_pid) for _ in range(4)]
        assert len(set(pids)) == 4  # a fresh worker per task, forked by the helper
        for _ in range(2):  # the helper kills its worker on the parent's request
            with pytest.raises(TaskTimeoutError):
                pool.apply(sleep_forever, timeout=0.2)
        assert pool.map(own_pid, range(3), chunksize=1)[0] > 0


def say_then_sleep(fd: int) -> None:
    os.write(fd, b"!")
    time.sleep(3600)


def test_a_killed_helper_is_replaced_and_its_workers_are_lost_like_crashes() -> None:
    r, w = os.pipe()  # inherited by every worker: a running task says so through it
    try:
        with procly.get_context("fork").Pool(1) as pool:
            with pytest.raises(WorkerCrashedError):
                pool.apply(die_kill)
            engine = _engine(pool)
            helper = engine._sup.helper
            assert helper is not None
            running = pool.apply_async(say_then_sleep, (w,))
            assert os.read(r, 1) == b"!"  # a worker forked by the helper runs it
            os.kill(helper._proc.pid, signal.SIGKILL)  # its workers die with it
            with pytest.raises(WorkerCrashedError):
                running.get(30)
            assert pool.map(own_pid, range(8)) and pool.apply(parent_pid) > 0
            assert engine._sup.helper is not helper
    finally:
        os.close(r)
        os.close(w)


#: A pool that lost a worker (so has a helper), prints its processes' pids, then exits
#: (argv[2] "exit") or waits to be killed ("wait").  argv[1]: the start method.
HELPER_TREE = """
import os, signal, sys, time
import procly

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if __name__ == "__main__":
    pool = procly.get_context(sys.argv[1]).Pool(2)
    try:
        pool.apply(die)
    except procly.WorkerCrashedError:
        pass
    print(pool.apply(abs, (-3,)), flush=True)
    engine = pool._engine
    pids = [engine._sup.helper._proc.pid] + [s.proc.pid for s in engine._sup.workers()]
    print("PIDS", *pids, flush=True)
    if sys.argv[2] == "wait":
        time.sleep(3600)
"""


def _helper_tree_pids(line: str) -> list[int]:
    assert line.startswith("PIDS"), line
    pids = [int(p) for p in line.split()[1:]]
    assert len(pids) >= 3  # the helper, a worker it forked, the first worker (and a spare)
    return pids


def _all_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return all(process_gone(p) for p in pids)


@linux_only
def test_helper_and_its_workers_die_at_interpreter_exit(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "helper_tree.py"
    script.write_text(HELPER_TREE)
    result = run_python([str(script), start_method, "exit"], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    pids = _helper_tree_pids(result.stdout.splitlines()[1])
    assert _all_gone(pids)


def note_exit(fd: int) -> None:
    os.write(fd, b"x")


def test_close_stops_unused_workers_but_lets_exit_hooks_run() -> None:
    ctx = procly.get_context("fork")
    # no task, no initializer, no hook: the workers are killed at close (nothing to finish)
    pool = ctx.Pool(2)
    engine = _engine(pool)
    pool.close()
    pool.join()
    assert not engine._sup.slots and not engine._dying
    # an exit hook must run in every worker, the one that never got a task included
    r, w = os.pipe()
    try:
        pool = ctx.Pool(2, worker_exit=functools.partial(note_exit, w))
        assert pool.apply(own_pid) > 0  # one worker ran a task, the other none
        pool.close()
        pool.join()
        os.close(w)
        w = -1
        assert os.read(r, 16) == b"xx"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@linux_only
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_fresh_replacements_do_not_share_numpy_random_state(method: str, tmp_path: Path) -> None:
    """Under spawn/forkserver every worker draws its own NumPy numbers, as freshly started
    ones do, although replacements are forks of one helper that imported NumPy."""
    pytest.importorskip("numpy")
    script = tmp_path / "draws.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal
            import numpy as np
            import numpy.random  # seeded here: in the helper too, which imports this module
            import procly

            def die():
                os.kill(os.getpid(), signal.SIGKILL)

            def draw():
                return float(np.random.random())

            if __name__ == "__main__":
                with procly.get_context({method!r}).Pool(1) as pool:
                    draws = []
                    for _ in range(3):
                        try:
                            pool.apply(die)
                        except procly.WorkerCrashedError:
                            pass
                        draws.append(pool.apply(draw))
                    helper = pool._engine._sup.helper
                    print("HELPER", helper is not None, "DRAWS", len(set(draws)))
            """
        )
    )
    result = run_python([str(script)], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HELPER True DRAWS 3" in result.stdout


@linux_only
def test_the_helper_imports_the_task_functions_modules_before_forking(start_method: str) -> None:
    """Replacements find the modules of the functions sent so far imported already."""
    with procly.get_context(start_method).Pool(1) as pool:
        first = pool.apply(imported_here)  # a worker started by the pool's method
        assert first is (start_method != "fork")
        with pytest.raises(WorkerCrashedError):
            pool.apply(die_kill)
        assert pool.apply(imported_here) is False  # imported by the helper (or the parent)


def worker_environment(_: Any = None) -> tuple[str | None, str | None]:
    return os.environ.get("PROCLY_POOL_DEPTH"), os.environ.get("OPENBLAS_NUM_THREADS")


@linux_only
def test_helper_workers_inherit_the_environment_the_helper_applied(
    start_method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper sets the pool depth and the native thread limits once; its workers
    skip that step and still have both."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with procly.get_context(start_method).Pool(1, thread_limit=3) as pool:
        first = pool.apply(worker_environment)
        with pytest.raises(WorkerCrashedError):
            pool.apply(die_kill)
        assert pool.apply(worker_environment) == first == ("1", "3")


@linux_only
def test_helper_and_its_workers_die_with_a_sigkilled_parent(
    start_method: str, tmp_path: Path
) -> None:
    import subprocess

    from _support.subproc import SRC

    script = tmp_path / "helper_tree.py"
    script.write_text(HELPER_TREE)
    env = dict(os.environ, PYTHONPATH=SRC)
    with subprocess.Popen(
        [sys.executable, str(script), start_method, "wait"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as parent:
        try:
            assert parent.stdout is not None
            assert parent.stdout.readline().strip() == "3"
            pids = _helper_tree_pids(parent.stdout.readline())
        finally:
            parent.send_signal(signal.SIGKILL)
            parent.wait()
    assert _all_gone(pids), f"survived their parent: {pids}"


THREADED_MODULE = """
import os, signal, threading

started = threading.Event()
threading.Thread(target=started.wait, daemon=True).start()  # a thread, at import


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def parent_pid():
    return os.getppid()
"""

THREADED_MAIN = """
import os, sys
import procly

if __name__ == "__main__":
    import threaded  # the module of the task functions: imported by workers and helper
    with procly.get_context(sys.argv[1]).Pool(1) as pool:
        first = pool.apply(threaded.parent_pid)
        parents = []
        for _ in range(2):
            try:
                pool.apply(threaded.die)
            except procly.WorkerCrashedError:
                pass
            parents.append(pool.apply(threaded.parent_pid))
        engine = pool._engine
        print("HELPER", engine._sup.helper, "FAILED", engine._helper_failed)
        print("PARENTS", first == os.getpid(), all(p == os.getpid() for p in parents))
"""


@linux_only
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_helper_whose_imports_start_a_thread_is_not_used(method: str, tmp_path: Path) -> None:
    """Under spawn/forkserver the workers are never forks of a process with threads of
    the user's: if importing the task functions' modules starts one in the helper, the
    pool starts its replacements by its own method again (and the tasks sent to workers
    the helper never started go to others instead of failing)."""
    (tmp_path / "threaded.py").write_text(THREADED_MODULE)
    (tmp_path / "main.py").write_text(THREADED_MAIN)
    result = run_python([str(tmp_path / "main.py"), method], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HELPER None FAILED True" in result.stdout
    # spawn: every worker is our child again; forkserver: the server's (not the helper's)
    expected = "PARENTS True True" if method == "spawn" else "PARENTS False False"
    assert expected in result.stdout
