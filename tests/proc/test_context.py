"""Start methods and contexts: get/set_start_method, get_context, errors."""

from __future__ import annotations

import pytest

import procly
from _support.subproc import run_in_subprocess
from procly import context
from procly.errors import ContextAlreadySetError, StartMethodError


def test_all_start_methods_default_first() -> None:
    methods = procly.get_all_start_methods()
    assert sorted(methods) == ["fork", "forkserver", "spawn"]
    assert methods[0] == procly._proc._context.default_start_method()


@pytest.mark.parametrize("bad", ["nope", "", 3, "FORK"])
def test_unknown_start_method(bad: object) -> None:
    with pytest.raises(StartMethodError, match="cannot find context"):
        procly.get_context(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        procly.get_context(bad)  # type: ignore[arg-type]


def test_concrete_contexts() -> None:
    for method, ctx_cls, proc_cls in [
        ("fork", context.ForkContext, context.ForkProcess),
        ("spawn", context.SpawnContext, context.SpawnProcess),
        ("forkserver", context.ForkServerContext, context.ForkServerProcess),
    ]:
        ctx = procly.get_context(method)
        assert isinstance(ctx, ctx_cls)
        assert ctx is procly.get_context(method)
        assert ctx.get_start_method() == method
        assert ctx.get_context() is ctx
        assert ctx.Process is proc_cls
        assert issubclass(proc_cls, procly.process.BaseProcess)
        with pytest.raises(ValueError, match="concrete context"):
            ctx.set_start_method("spawn")


def test_set_start_method_semantics() -> None:
    out = run_in_subprocess(
        """
        import procly
        from procly.errors import ContextAlreadySetError
        assert procly.get_start_method(allow_none=True) is None
        procly.set_start_method("spawn")
        assert procly.get_start_method() == "spawn"
        assert procly.get_context().get_start_method() == "spawn"
        try:
            procly.set_start_method("fork")
        except ContextAlreadySetError as exc:
            assert isinstance(exc, RuntimeError), exc
            print("already set:", exc)
        else:
            raise SystemExit("no error")
        procly.set_start_method("forkserver", force=True)
        assert procly.get_start_method() == "forkserver"
        procly.set_start_method(None, force=True)
        assert procly.get_start_method(allow_none=True) is None
        default = procly.get_start_method()
        assert default == procly.get_all_start_methods()[0], default
        try:
            procly.set_start_method("bogus", force=True)
        except ValueError as exc:
            print("bogus:", exc)
        print("ok")
        """
    )
    assert out.returncode == 0, out.stderr
    assert "already set: context has already been set" in out.stdout
    assert "bogus: cannot find context for 'bogus'" in out.stdout
    assert out.stdout.strip().endswith("ok")


def test_default_process_uses_chosen_method() -> None:
    out = run_in_subprocess(
        """
        import procly
        def report():
            print(procly.get_start_method(), type(procly.current_process()).__name__, flush=True)
        if __name__ == "__main__":
            for method in ("spawn", "forkserver", "fork"):
                procly.set_start_method(method, force=True)
                p = procly.Process(target=report)
                p.start(); p.join()
                assert p.exitcode == 0, p.exitcode
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["spawn", "Process", "forkserver", "Process", "fork", "Process"]


def test_errors_are_stdlib_compatible() -> None:
    assert issubclass(StartMethodError, ValueError)
    assert issubclass(ContextAlreadySetError, RuntimeError)


def test_forkserver_preload_validation() -> None:
    with pytest.raises(TypeError, match="list of strings"):
        procly.set_forkserver_preload([1])  # type: ignore[list-item]


def test_context_level_helpers() -> None:
    ctx = procly.get_context("spawn")
    assert ctx.current_process() is procly.current_process()
    assert ctx.parent_process() is None
    assert ctx.cpu_count() >= ctx.usable_cpu_count() >= 1
    assert ctx.get_all_start_methods() == procly.get_all_start_methods()
    assert procly.current_process().name == "MainProcess"
    assert procly.parent_process() is None
    assert len(procly.current_process().authkey) == 32
    procly.freeze_support()
    logger = procly.get_logger()
    assert logger is procly.get_logger() and not logger.propagate


def test_set_executable_is_used_by_spawn() -> None:
    out = run_in_subprocess(
        """
        import sys, procly
        def f():
            print("child ran", flush=True)
        if __name__ == "__main__":
            procly.set_executable(sys.executable)
            p = procly.get_context("spawn").Process(target=f); p.start(); p.join()
            assert p.exitcode == 0
            procly.set_executable("/nonexistent/python")
            p = procly.get_context("spawn").Process(target=f)
            try:
                p.start()
            except OSError as exc:
                print("bad executable:", type(exc).__name__)
        """
    )
    assert out.returncode == 0, out.stderr
    assert "child ran" in out.stdout
    assert "bad executable: FileNotFoundError" in out.stdout
