"""The same behavioural tests against the standard library and procly, so that any
difference shows up side by side (the standard library is the reference)."""

from __future__ import annotations

import importlib
import re
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from _support.subproc import run_in_subprocess


@pytest.fixture(params=["multiprocessing", "procly"])
def mp(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def _exit(code: object) -> None:
    sys.exit(code)


def _raise() -> None:
    raise KeyError("nope")


def _sleep() -> None:
    time.sleep(3600)


def _report(modname: str, path: str) -> None:
    mod = importlib.import_module(modname)
    parent = mod.parent_process()
    Path(path).write_text(
        repr((mod.current_process().name, parent.name, parent.pid, mod.current_process().daemon))
    )


@pytest.mark.parametrize(
    ("target", "args", "expected"),
    [(_exit, (None,), 0), (_exit, (4,), 4), (_exit, ("text",), 1), (_raise, (), 1)],
)
def test_exit_codes(
    mp: ModuleType, start_method: str, target: object, args: tuple[object, ...], expected: int
) -> None:
    p = mp.get_context(start_method).Process(target=target, args=args)
    p.start()
    p.join()
    assert p.exitcode == expected


def test_signals(mp: ModuleType, start_method: str) -> None:
    ctx = mp.get_context(start_method)
    for how, code in (("terminate", -signal.SIGTERM), ("kill", -signal.SIGKILL)):
        p = ctx.Process(target=_sleep)
        p.start()
        getattr(p, how)()
        p.join()
        assert p.exitcode == code
        assert re.fullmatch(
            rf"<\w+ name='\w+-\d+' pid={p.pid} parent=\d+ stopped exitcode=-{signal.Signals(-code).name}>",
            repr(p),
        )


def _error(call: object) -> tuple[str, str]:
    try:
        call()  # type: ignore[operator]
    except Exception as exc:
        # procly's errors subclass the builtin the stdlib raised: compare by that builtin
        builtin = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
        return builtin.__name__, str(exc)
    return "", ""


def test_misuse_errors_match(mp: ModuleType) -> None:
    import multiprocessing

    def errors(mod: ModuleType) -> list[tuple[str, str]]:
        ctx = mod.get_context("fork")
        found = []
        p = ctx.Process(target=_sleep)
        found.append(_error(p.join))
        found.append(_error(lambda: p.sentinel))
        found.append(_error(lambda: setattr(p, "name", 3)))
        p.start()
        found.append(_error(p.start))
        found.append(_error(p.close))
        found.append(_error(lambda: setattr(p, "daemon", True)))
        p.kill()
        p.join()
        p.close()
        found.append(_error(p.is_alive))
        found.append(_error(lambda: p.pid))
        found.append(_error(lambda: ctx.Process(group=1)))
        found.append(_error(lambda: mod.get_context("nope")))
        found.append(_error(lambda: ctx.set_start_method("fork")))
        return found

    assert errors(mp) == errors(multiprocessing)


def test_repr_lifecycle(mp: ModuleType, start_method: str) -> None:
    p = mp.get_context(start_method).Process(target=_exit, args=(2,), name="r", daemon=True)
    assert re.fullmatch(r"<\w*Process name='r' parent=\d+ initial daemon>", repr(p)), repr(p)
    p.start()
    p.join()
    assert re.fullmatch(
        rf"<\w*Process name='r' pid={p.pid} parent=\d+ stopped exitcode=2 daemon>", repr(p)
    )
    p.close()
    assert re.fullmatch(r"<\w*Process name='r' parent=\d+ closed daemon>", repr(p)), repr(p)


def test_child_sees_identity(mp: ModuleType, start_method: str, tmp_path: Path) -> None:
    out = tmp_path / "who"
    p = mp.get_context(start_method).Process(
        target=_report, args=(mp.__name__, str(out)), name="kid"
    )
    p.start()
    p.join()
    assert p.exitcode == 0
    assert eval(out.read_text()) == ("kid", "MainProcess", mp.current_process().pid, False)


def test_main_process_facts(mp: ModuleType) -> None:
    me = mp.current_process()
    assert me.name == "MainProcess"
    assert mp.parent_process() is None
    assert me.is_alive()
    assert isinstance(me.authkey, bytes) and len(me.authkey) == 32
    assert mp.active_children() == []
    assert set(mp.get_all_start_methods()) == {"fork", "spawn", "forkserver"}
    assert mp.cpu_count() >= 1


@pytest.mark.parametrize("modname", ["multiprocessing", "procly"])
def test_set_start_method_twice(modname: str) -> None:
    out = run_in_subprocess(
        f"""
        import {modname} as mp
        mp.set_start_method("spawn")
        try:
            mp.set_start_method("fork")
        except RuntimeError as exc:
            print("RuntimeError", exc)
        mp.set_start_method("fork", force=True)
        print(mp.get_start_method())
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["RuntimeError context has already been set", "fork"]
