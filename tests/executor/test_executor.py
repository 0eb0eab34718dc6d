"""``ProcessPoolExecutor``: the concurrent.futures contract plus crash/timeout/cancel."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import procly
from _support.subproc import process_gone
from _support.tasks import crash_once
from procly.errors import BrokenProcessPool, RemoteTraceback, TaskTimeoutError, WorkerCrashedError
from procly.futures import ProcessPoolExecutor


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0) -> int:
    return a + b


def fail(x: object) -> None:
    raise KeyError(x)


def pid_of() -> int:
    return os.getpid()


def sleep_forever(*_: Any) -> None:
    time.sleep(3600)


def die(code: int) -> None:
    os._exit(code)


def bad_init() -> None:
    raise RuntimeError("init failed")


_STATE: list[Any] = []


def init_state(value: Any) -> None:
    _STATE.append(value)


def read_state() -> Any:
    return _STATE[-1]


@pytest.fixture
def executor(start_method: str) -> Iterator[ProcessPoolExecutor]:
    with ProcessPoolExecutor(2, mp_context=procly.get_context(start_method)) as ex:
        yield ex


def test_submit_and_real_futures(executor: ProcessPoolExecutor) -> None:
    fut = executor.submit(add, 1, b=2)
    assert isinstance(fut, cf.Future)
    assert fut.result(30) == 3
    futs = [executor.submit(square, i) for i in range(20)]
    assert sorted(f.result() for f in cf.as_completed(futs, timeout=30)) == sorted(
        i * i for i in range(20)
    )
    done, not_done = cf.wait(futs, timeout=30)
    assert len(done) == 20 and not not_done


def test_asyncio_wrap_future(executor: ProcessPoolExecutor) -> None:
    async def main() -> int:
        return await asyncio.wrap_future(executor.submit(square, 6))

    assert asyncio.run(main()) == 36


def test_exception_with_remote_traceback(executor: ProcessPoolExecutor) -> None:
    fut = executor.submit(fail, "k")
    with pytest.raises(KeyError) as info:
        fut.result(30)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert isinstance(fut.exception(), KeyError)


def test_map(executor: ProcessPoolExecutor) -> None:
    assert list(executor.map(square, range(30))) == [i * i for i in range(30)]
    assert list(executor.map(add, [1, 2], [10, 20])) == [11, 22]
    assert list(executor.map(square, range(30), chunksize=4)) == [i * i for i in range(30)]
    assert list(executor.map(lambda x: -x, [1, 2])) == [-1, -2]
    with pytest.raises(KeyError):
        list(executor.map(fail, [1, 2]))
    with pytest.raises(ValueError):
        executor.map(square, [1], chunksize=0)
    with pytest.raises(ValueError):
        executor.map(square, [1], buffersize=0)


def test_map_timeout(start_method: str) -> None:
    with ProcessPoolExecutor(1, mp_context=procly.get_context(start_method)) as ex:
        it = ex.map(sleep_forever, [1], timeout=0.1)
        with pytest.raises(TimeoutError):
            next(it)
        ex.shutdown(wait=False, cancel_futures=True)
        # the running call is still sleeping: stop it so the test leaves nothing behind
        ex._engine.terminate()  # type: ignore[union-attr]


def test_map_lazy_bounded(executor: ProcessPoolExecutor) -> None:
    pulled = 0

    def gen() -> Iterator[int]:
        nonlocal pulled
        i = 0
        while True:
            pulled += 1
            yield i
            i += 1

    it = executor.map(square, gen(), chunksize=1, buffersize=3)
    assert [next(it) for _ in range(50)] == [i * i for i in range(50)]
    del it
    assert pulled <= 50 + 3 + 1


def test_cancel_running_task_kills_it(executor: ProcessPoolExecutor) -> None:
    fut = executor.submit(sleep_forever)
    deadline = time.monotonic() + 30
    while not fut.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fut.running()
    assert fut.cancel()
    assert fut.cancelled()
    with pytest.raises(cf.CancelledError):
        fut.result()
    assert executor.submit(square, 3).result(30) == 9


def test_cancel_pending_and_finished(start_method: str) -> None:
    with ProcessPoolExecutor(1, mp_context=procly.get_context(start_method)) as ex:
        done = ex.submit(square, 2)
        assert done.result(30) == 4
        assert not done.cancel()
        blocker = ex.submit(sleep_forever)
        queued = [ex.submit(square, i) for i in range(5)]
        assert all(q.cancel() for q in queued)
        assert blocker.cancel()
        assert ex.submit(square, 5).result(30) == 25


def test_result_waiter_wakes_on_cancel_and_times_out(start_method: str) -> None:
    # result() waits with the engine's shared waiter: a cancel from another thread (not a
    # completion by the dispatcher) must wake it, and its timeout must hold.
    with ProcessPoolExecutor(1, mp_context=procly.get_context(start_method)) as ex:
        blocker = ex.submit(sleep_forever)
        queued = ex.submit(square, 3)
        with pytest.raises(cf.TimeoutError):
            queued.result(timeout=0.1)
        got: list[str] = []

        def wait() -> None:
            try:
                queued.result(timeout=60)
            except cf.CancelledError:
                got.append("cancelled")

        thread = threading.Thread(target=wait)
        thread.start()
        waiter = ex._engine.waiter  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while not waiter.waiters and time.monotonic() < deadline:
            time.sleep(0.01)
        assert waiter.waiters
        assert queued.cancel()
        thread.join(30)
        assert got == ["cancelled"]
        assert blocker.cancel()


def test_crash_fails_only_its_future(executor: ProcessPoolExecutor) -> None:
    futs = [executor.submit(square, i) for i in range(10)]
    bad = executor.submit(die, 5)
    more = [executor.submit(square, i) for i in range(10)]
    with pytest.raises(WorkerCrashedError) as info:
        bad.result(30)
    assert isinstance(info.value, BrokenProcessPool)
    assert info.value.exitcode == 5
    assert [f.result(30) for f in futs + more] == [i * i for i in range(10)] * 2


def test_task_timeout(start_method: str) -> None:
    with ProcessPoolExecutor(
        1, mp_context=procly.get_context(start_method), task_timeout=1.5
    ) as ex:
        with pytest.raises(TaskTimeoutError):
            ex.submit(sleep_forever).result(30)
        assert ex.submit(square, 4).result(30) == 16
        with pytest.raises(TaskTimeoutError):
            ex.submit_with_timeout(0.2, sleep_forever).result(30)


def test_initializer_and_max_tasks(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with ProcessPoolExecutor(1, mp_context=ctx, initializer=init_state, initargs=(42,)) as ex:
        assert ex.submit(read_state).result(30) == 42
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=2) as ex:
        pids = [ex.submit(pid_of).result(30) for _ in range(4)]
    assert len(set(pids)) == 2


def test_broken_initializer(start_method: str) -> None:
    with ProcessPoolExecutor(2, mp_context=procly.get_context(start_method), initializer=bad_init) as ex:
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 1).result(30)
        with pytest.raises(BrokenProcessPool):
            ex.submit(square, 1)


def test_shutdown_semantics(start_method: str) -> None:
    ex = ProcessPoolExecutor(2, mp_context=procly.get_context(start_method))
    futs = [ex.submit(square, i) for i in range(10)]
    ex.shutdown(wait=True)
    assert [f.result() for f in futs] == [i * i for i in range(10)]
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)
    with pytest.raises(RuntimeError):
        ex.map(square, [1])
    ex.shutdown()  # idempotent


def test_shutdown_cancel_futures(start_method: str) -> None:
    ex = ProcessPoolExecutor(1, mp_context=procly.get_context(start_method))
    gate = ex.submit(square, 1)
    gate.result(30)
    futs = [ex.submit(square, i) for i in range(200)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.done() for f in futs)
    assert any(f.cancelled() for f in futs) or all(not f.cancelled() for f in futs)
    for f in futs:
        if not f.cancelled():
            assert f.result() is not None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ProcessPoolExecutor(0)
    with pytest.raises(TypeError):
        ProcessPoolExecutor(1, initializer=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ProcessPoolExecutor(1, max_tasks_per_child=0)


def test_public_names() -> None:
    assert procly.ProcessPoolExecutor is ProcessPoolExecutor
    assert ProcessPoolExecutor.__module__ == "procly.futures"
    assert issubclass(WorkerCrashedError, cf.BrokenExecutor)
    assert issubclass(TaskTimeoutError, TimeoutError)


def test_submit_from_many_threads(executor: ProcessPoolExecutor) -> None:
    out: list[list[int]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        out[i] = [f.result(60) for f in [executor.submit(square, j) for j in range(200)]]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(o == [j * j for j in range(200)] for o in out)


def test_executor_dropped_without_shutdown_winds_down(start_method: str) -> None:
    import gc

    ex = ProcessPoolExecutor(1, mp_context=procly.get_context(start_method))
    engine = ex._engine
    assert ex.submit(square, 3).result(30) == 9
    del ex
    gc.collect()
    assert engine is not None and engine.join(30)


def test_executor_retries(start_method: str, tmp_path: Any) -> None:
    with ProcessPoolExecutor(1, mp_context=procly.get_context(start_method), retries=2) as ex:
        assert ex.submit(crash_once, str(tmp_path / "m")).result(30) == "second try"


CTRL_C_EXECUTOR = """
import sys, time
import procly
from procly.futures import ProcessPoolExecutor

def sleep_forever():
    time.sleep(3600)

if __name__ == "__main__":
    try:
        with ProcessPoolExecutor(2, mp_context=procly.get_context(sys.argv[1])) as ex:
            f = ex.submit(sleep_forever)
            while not f.running():
                time.sleep(0.01)
            print("PIDS", *[s.proc.pid for s in ex._engine._sup.slots], flush=True)
            f.result()
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
"""



def test_ctrl_c_in_executor_kills_workers(start_method: str, tmp_path: Any) -> None:
    import signal
    import subprocess
    import sys

    from _support.subproc import SRC

    script = tmp_path / "ctrlc_ex.py"
    script.write_text(CTRL_C_EXECUTOR)
    proc = subprocess.Popen(
        [sys.executable, str(script), start_method],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=SRC),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PIDS"), line
        pids = [int(p) for p in line.split()[1:]]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert "INTERRUPTED" in out, err
        assert time.monotonic() - t0 < 20  # bound only: no wait for the sleeping task
        deadline = time.monotonic() + 10
        while not all(process_gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(process_gone(p) for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_reusable_executor_is_shared_and_replaced(start_method: str) -> None:
    from procly._executor._reusable import _HOLDER
    from procly.futures import get_reusable_executor

    ctx = procly.get_context(start_method)
    try:
        first = get_reusable_executor(1, ctx)
        assert get_reusable_executor(1, ctx) is first
        assert first.submit(square, 3).result(30) == 9
        second = get_reusable_executor(2, ctx)
        assert second is not first
        assert second.submit(square, 4).result(30) == 16
        second.shutdown()
        third = get_reusable_executor(2, ctx)
        assert third is not second
        assert third.submit(square, 5).result(30) == 25
        first.shutdown()  # already winding down; wait for it
    finally:
        _HOLDER.reset()


# -- EngineFuture: the condition is made on first use (no processes needed) ---------------


def _engine_future() -> Any:
    from procly._executor._executor import EngineFuture

    return EngineFuture()


def test_future_completed_without_condition() -> None:
    ok, bad = _engine_future(), _engine_future()
    assert ok.task_started(None) and bad.task_started(None)
    assert ok.running()  # (made its condition: the state is still read right)
    ok.task_done(None, True, 42)
    bad.task_done(None, False, ValueError("boom"))
    assert bad._cond is None  # nobody looked: completed without a condition
    assert ok.result() == 42 and ok.done() and ok.exception() is None
    with pytest.raises(ValueError, match="boom"):
        bad.result()
    assert isinstance(bad.exception(), ValueError)


def test_future_waiters_and_callbacks_are_notified() -> None:
    futs = [_engine_future() for _ in range(50)]
    seen: list[int] = []
    futs[0].add_done_callback(lambda f: seen.append(f.result()))
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(futs[1].result(timeout=30)))
    waiter.start()
    collector: list[int] = []
    watcher = threading.Thread(
        target=lambda: collector.extend(f.result() for f in cf.as_completed(futs, timeout=30))
    )
    watcher.start()
    for i, fut in enumerate(futs):  # completed from another thread, as the dispatcher does
        assert fut.task_started(None)
        fut.task_done(None, True, i)
    waiter.join(30)
    watcher.join(30)
    assert seen == [0] and got == [1] and sorted(collector) == list(range(50))


def test_future_cancelled_before_start() -> None:
    fut = _engine_future()
    assert fut.cancel() and fut.cancelled()
    assert fut.task_started(None) is False
    fut.task_done(None, True, 1)  # a late result is dropped
    with pytest.raises(cf.CancelledError):
        fut.result()
