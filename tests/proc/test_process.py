"""Process objects under every start method: lifecycle, exit codes, misuse errors."""

from __future__ import annotations

import ast
import os
import select
import signal
import sys
import time
from pathlib import Path

import pytest

import procly
from procly import context
from procly.errors import SerializationError

# -- functions that run in children (module level: spawn/forkserver import them) ----------


def _noop() -> None:
    pass


def _exit_with(code: object) -> None:
    sys.exit(code)


def _raise() -> None:
    raise ValueError("boom in child")


def _block_forever(conn: object = None) -> None:
    time.sleep(3600)


def _send_identity(path: str) -> None:
    parent = procly.parent_process()
    info = (
        procly.current_process().name,
        parent.pid if parent is not None else None,
        parent.name if parent is not None else None,
        procly.current_process().daemon,
        bytes(procly.current_process().authkey),
        procly.get_start_method(),
    )
    with open(path, "w") as f:
        f.write(repr(info))


def _write_fd(fd: int, data: bytes) -> None:
    os.write(fd, data)


# -- tests --------------------------------------------------------------------------------


def test_normal_exit(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    p = ctx.Process(target=_noop)
    assert p.exitcode is None and p.pid is None
    p.start()
    assert isinstance(p.pid, int) and p.pid == p.ident
    p.join()
    assert p.exitcode == 0
    assert not p.is_alive()
    p.close()


@pytest.mark.parametrize(("code", "expected"), [(None, 0), (3, 3), ("message", 1)])
def test_sys_exit(
    start_method: str, code: object, expected: int, capfd: pytest.CaptureFixture[str]
) -> None:
    p = procly.get_context(start_method).Process(target=_exit_with, args=(code,))
    p.start()
    p.join()
    assert p.exitcode == expected
    if code == "message":
        assert "message" in capfd.readouterr().err


def test_exception_in_target(start_method: str, capfd: pytest.CaptureFixture[str]) -> None:
    p = procly.get_context(start_method).Process(target=_raise, name="boomer")
    p.start()
    p.join()
    assert p.exitcode == 1
    err = capfd.readouterr().err
    assert "Process boomer:" in err and "ValueError: boom in child" in err


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_terminate_and_kill(start_method: str, how: str) -> None:
    p = procly.get_context(start_method).Process(target=_block_forever)
    p.start()
    p.join(0.05)
    assert p.is_alive() and p.exitcode is None
    getattr(p, how)()
    p.join(30)
    assert p.exitcode == (-signal.SIGTERM if how == "terminate" else -signal.SIGKILL)


def test_join_timeout_returns_with_process_alive(start_method: str) -> None:
    p = procly.get_context(start_method).Process(target=_block_forever)
    p.start()
    start = time.monotonic()
    p.join(0.2)
    assert time.monotonic() - start >= 0.15
    assert p.is_alive() and p.exitcode is None
    p.kill()
    p.join()


def test_sentinel_select(start_method: str) -> None:
    p = procly.get_context(start_method).Process(target=_block_forever)
    p.start()
    assert select.select([p.sentinel], [], [], 0)[0] == []
    p.terminate()
    assert select.select([p.sentinel], [], [], 30)[0] == [p.sentinel]
    p.join()


def test_identity_in_child(start_method: str, tmp_path: Path) -> None:
    ctx = procly.get_context(start_method)
    out = tmp_path / "identity"
    p = ctx.Process(target=_send_identity, args=(str(out),), name="kid", daemon=True)
    p.start()
    p.join()
    assert p.exitcode == 0
    name, ppid, pname, daemon, authkey, method = ast.literal_eval(out.read_text())
    assert (name, ppid, pname, daemon) == ("kid", os.getpid(), "MainProcess", True)
    assert authkey == bytes(procly.current_process().authkey)
    assert method == start_method


class _ForkSub(context.ForkProcess):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def run(self) -> None:
        sys.exit(self.code)


class _SpawnSub(context.SpawnProcess):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def run(self) -> None:
        sys.exit(self.code)


class _ForkServerSub(context.ForkServerProcess):
    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def run(self) -> None:
        sys.exit(self.code)


_SUBCLASSES = {"fork": _ForkSub, "spawn": _SpawnSub, "forkserver": _ForkServerSub}


def test_subclass_run(start_method: str) -> None:
    proc = _SUBCLASSES[start_method](7)
    assert proc.name.startswith(type(proc).__name__ + "-")
    proc.start()
    proc.join()
    assert proc.exitcode == 7


def test_lambda_target(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    r, w = os.pipe()
    try:
        p = (
            ctx.Process(target=lambda fd: os.write(fd, b"x"), args=(w,))
            if start_method == "fork"
            else None
        )
        if p is None:
            value = 5
            p = ctx.Process(target=lambda: sys.exit(value))
            p.start()
            p.join()
            assert p.exitcode == 5
        else:
            p.start()
            p.join()
            assert p.exitcode == 0
            assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.close(w)


def test_unpicklable_target_fails_in_parent(start_method: str) -> None:
    if start_method == "fork":
        pytest.skip("fork pickles nothing")
    lock = __import__("threading").Lock()
    p = procly.get_context(start_method).Process(target=_noop, args=(lock,))
    with pytest.raises(SerializationError, match="lock"):
        p.start()
    assert procly.active_children() == []


def test_active_children(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    p = ctx.Process(target=_block_forever)
    assert p not in procly.active_children()
    p.start()
    assert p in procly.active_children()
    p.terminate()
    p.join()
    assert p not in procly.active_children()


def test_misuse_errors(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    p = ctx.Process(target=_noop)
    with pytest.raises(AssertionError, match="can only join a started process"):
        p.join()
    with pytest.raises(ValueError, match="process not started"):
        p.sentinel  # noqa: B018
    p.start()
    with pytest.raises(AssertionError, match="cannot start a process twice"):
        p.start()
    with pytest.raises(AssertionError, match="process has already started"):
        p.daemon = True
    p.join()
    p.close()
    for call in (p.start, p.join, p.is_alive, p.terminate, p.kill):
        with pytest.raises(ValueError, match="process object is closed"):
            call()
    with pytest.raises(AssertionError, match="group argument must be None"):
        ctx.Process(group=1)  # type: ignore[arg-type]


def test_close_running_process_raises(start_method: str) -> None:
    p = procly.get_context(start_method).Process(target=_block_forever)
    p.start()
    with pytest.raises(ValueError, match="Cannot close a process while it is still running"):
        p.close()
    p.kill()
    p.join()
    p.close()


def _stdin_of_child_and_grandchild(start_method: str, path: str) -> None:
    ctx = procly.get_context(start_method)
    child = ctx.Process(target=_stdin_report, args=(path + ".grandchild",))
    child.start()
    child.join()
    _stdin_report(path)


def _stdin_report(path: str) -> None:
    same = os.path.samestat(os.fstat(sys.stdin.fileno()), os.stat(os.devnull))
    with open(path, "w") as f:
        f.write(f"{same} {sys.stdin.read()!r}")


def test_stdin_is_dev_null_in_children_and_grandchildren(start_method: str, tmp_path: Path) -> None:
    """A child reads nothing from the parent's stdin; a grandchild forked from a procly
    child keeps the /dev/null it inherited (it is not reopened) and reads nothing either."""
    path = str(tmp_path / "stdin")
    ctx = procly.get_context(start_method)
    p = ctx.Process(target=_stdin_of_child_and_grandchild, args=("fork", path))
    p.start()
    p.join()
    assert p.exitcode == 0
    assert Path(path).read_text() == "True ''"
    assert Path(path + ".grandchild").read_text() == "True ''"
