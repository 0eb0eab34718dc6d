"""Start-method machinery: __main__ re-import, parent death, fd passing, spawning flag."""

from __future__ import annotations

import os
import pickle
import textwrap
import threading
import time
from pathlib import Path

import pytest

import procly
from _support.subproc import process_gone, run_in_subprocess, run_python
from procly._proc._spawning import assert_spawning, is_spawning
from procly._serial._fdpass import reduce_fd

# -- __main__ handling ------------------------------------------------------------------

_MAIN_SCRIPT = """
import sys
import procly

print("imported as", __name__, flush=True)

def where():
    print("child:", __name__, where.__module__, sys.modules["__main__"].__name__, flush=True)

if __name__ == "__main__":
    ctx = procly.get_context(sys.argv[1])
    p = ctx.Process(target=where)
    p.start()
    p.join()
    print("exitcode", p.exitcode, flush=True)
"""


@pytest.mark.parametrize("how", ["script", "module", "command"])
def test_main_module_handling(start_method: str, how: str, tmp_path: Path) -> None:
    pkg = tmp_path / "mainpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "prog.py").write_text(_MAIN_SCRIPT)
    if how == "script":
        out = run_python([str(pkg / "prog.py"), start_method], cwd=tmp_path)
    elif how == "module":
        out = run_python(["-m", "mainpkg.prog", start_method], cwd=tmp_path)
    else:
        out = run_python(["-c", _MAIN_SCRIPT, start_method], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "exitcode 0" in lines, out.stdout + out.stderr
    if start_method == "fork" or how == "command":
        # nothing re-imported: fork inherits the module, -c has no file (by-value pickling)
        assert lines.count("imported as __main__") == 1
        assert not any("__mp_main__" in line for line in lines)
    else:
        # the child re-imported the main module as __mp_main__; the guard did not run
        assert "imported as __mp_main__" in lines, out.stdout
        assert "child: __mp_main__ __mp_main__ __mp_main__" in lines, out.stdout


# -- children never outlive their parent ------------------------------------------------

_KILLED_PARENT = """
import os, sys, threading, time
import procly

def sleeper():
    time.sleep(3600)

def start_in_thread(ctx, out):
    p = ctx.Process(target=sleeper)
    p.start()
    out.append(p.pid)

if __name__ == "__main__":
    pids = []
    for method in ("fork", "spawn", "forkserver"):
        ctx = procly.get_context(method)
        p = ctx.Process(target=sleeper)
        p.start()
        pids.append(p.pid)
        # started from a thread that exits at once: must survive that (no PDEATHSIG)
        t = threading.Thread(target=start_in_thread, args=(ctx, pids))
        t.start(); t.join()
    from procly._proc._launch._forkserver import LAUNCHER
    pids.append(LAUNCHER._server_pid)  # the forkserver must go too
    print(" ".join(map(str, pids)), flush=True)
    time.sleep(3600)
"""



def test_children_die_with_sigkilled_parent() -> None:
    import signal
    import subprocess
    import sys

    from _support.subproc import SRC

    env = dict(os.environ, PYTHONPATH=SRC)
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_PARENT], stdout=subprocess.PIPE, text=True, env=env
    ) as parent:
        try:
            assert parent.stdout is not None
            pids = [int(x) for x in parent.stdout.readline().split()]
            assert len(pids) == 7
            assert not any(process_gone(pid) for pid in pids), "a child started from a thread died early"
        finally:
            parent.send_signal(signal.SIGKILL)
            parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(process_gone(p) for p in pids):
        time.sleep(0.02)
    elapsed = 5 - (deadline - time.monotonic())
    assert all(process_gone(p) for p in pids), f"children survived their parent: {pids}"
    assert elapsed < 2.0, f"children took {elapsed:.2f} s to go"


# -- descriptors travel with the process object ----------------------------------------


class _FdBox:
    """An object holding a descriptor; unpickles to the child's copy of it (an int)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[object, ...]:
        return reduce_fd(self.fd, self)


def _write_to(fd: object, data: bytes) -> None:
    assert isinstance(fd, int), fd
    os.write(fd, data)


def test_fd_travels_with_process_object(start_method: str) -> None:
    if start_method == "fork":
        pytest.skip("fork inherits descriptors; nothing is pickled")
    r, w = os.pipe()
    try:
        p = procly.get_context(start_method).Process(target=_write_to, args=(_FdBox(w), b"hi"))
        p.start()
        p.join()
        assert p.exitcode == 0
        os.close(w)
        w = -1
        assert os.read(r, 10) == b"hi"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


# -- the spawning flag -------------------------------------------------------------------


class _OnlyBySpawning:
    def __reduce__(self) -> tuple[object, ...]:
        assert_spawning(self)
        return (_OnlyBySpawning, ())


def _check_type(obj: object) -> None:
    assert type(obj).__name__ == "_OnlyBySpawning"


def test_assert_spawning(start_method: str) -> None:
    assert not is_spawning()
    with pytest.raises(
        RuntimeError,
        match="_OnlyBySpawning objects should only be shared between processes through inheritance",
    ):
        pickle.dumps(_OnlyBySpawning())
    p = procly.get_context(start_method).Process(target=_check_type, args=(_OnlyBySpawning(),))
    p.start()
    p.join()
    assert p.exitcode == 0


def test_authkey_pickles_only_when_spawning() -> None:
    with pytest.raises(TypeError, match="disallowed for security reasons"):
        pickle.dumps(procly.current_process().authkey)


# -- exit behaviour ----------------------------------------------------------------------


def test_daemon_children_terminated_and_others_joined_at_exit() -> None:
    out = run_in_subprocess(
        """
        import os, sys, time
        import procly

        def forever():
            time.sleep(3600)

        def short(path):
            time.sleep(0.3)
            open(path, "w").write("done")

        if __name__ == "__main__":
            for method in ("fork", "spawn", "forkserver"):
                ctx = procly.get_context(method)
                d = ctx.Process(target=forever, daemon=True)
                d.start()
                n = ctx.Process(target=short, args=(sys.argv[1] + method,))
                n.start()
                print(d.pid, flush=True)
        """.replace("sys.argv[1]", repr(str(Path("/tmp") / f"procly-exit-{os.getpid()}-")))
    )
    assert out.returncode == 0, out.stderr
    for method in ("fork", "spawn", "forkserver"):
        path = Path("/tmp") / f"procly-exit-{os.getpid()}-{method}"
        assert path.read_text() == "done", method
        path.unlink()
    for pid in map(int, out.stdout.split()):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not process_gone(pid):
            time.sleep(0.02)
        assert process_gone(pid)


def _start_grandchild() -> None:
    p = procly.Process(target=time.sleep, args=(0,))
    p.start()


def test_daemon_cannot_have_children(start_method: str, capfd: pytest.CaptureFixture[str]) -> None:
    p = procly.get_context(start_method).Process(target=_start_grandchild, daemon=True)
    p.start()
    p.join()
    assert p.exitcode == 1
    assert "daemonic processes are not allowed to have children" in capfd.readouterr().err


def _start_in_child_of_child(path: str) -> None:
    ctx = procly.get_context(procly.get_start_method())
    p = ctx.Process(target=_write_text, args=(path, "grandchild"))
    p.start()
    p.join()
    sys_exit_code = p.exitcode
    raise SystemExit(sys_exit_code)


def _write_text(path: str, text: str) -> None:
    Path(path).write_text(text + " " + procly.parent_process().name)  # type: ignore[union-attr]


def test_grandchildren(start_method: str, tmp_path: Path) -> None:
    out = tmp_path / "g"
    p = procly.get_context(start_method).Process(
        target=_start_in_child_of_child, args=(str(out),), name="middle"
    )
    p.start()
    p.join()
    assert p.exitcode == 0
    assert out.read_text() == "grandchild middle"


def test_start_from_threads(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    procs = [ctx.Process(target=time.sleep, args=(0,)) for _ in range(4)]
    threads = [threading.Thread(target=p.start) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join()
        assert p.exitcode == 0


def test_after_fork_hook_runs_in_fork_child(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import procly, procly.util
        class Thing: pass
        thing = Thing()
        procly.util.register_after_fork(thing, lambda obj: open({str(tmp_path / "hook")!r}, 'w').write('ran'))
        def f(): pass
        if __name__ == "__main__":
            p = procly.get_context("fork").Process(target=f); p.start(); p.join()
        """
    )
    out = run_in_subprocess(code)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "hook").read_text() == "ran"


def _parent_alive(path: str) -> None:
    parent = procly.parent_process()
    assert parent is not None
    Path(path).write_text(repr((parent.is_alive(), parent.pid == os.getppid() or None)))


def test_parent_process_is_alive_in_child(start_method: str, tmp_path: Path) -> None:
    out = tmp_path / "alive"
    p = procly.get_context(start_method).Process(target=_parent_alive, args=(str(out),))
    p.start()
    p.join()
    assert p.exitcode == 0
    alive, _ = eval(out.read_text())
    assert alive is True


def test_bad_executable_leaks_nothing() -> None:
    out = run_in_subprocess(
        """
        import os, procly
        def f(): pass
        if __name__ == "__main__":
            before = len(os.listdir("/proc/self/fd"))
            procly.set_executable("/nonexistent/python")
            for _ in range(3):
                try:
                    procly.get_context("spawn").Process(target=f).start()
                except FileNotFoundError:
                    pass
            print(len(os.listdir("/proc/self/fd")) - before)
        """
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) <= 2  # the lifeline pipe, created once


def test_missing_main_guard_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "noguard.py"
    script.write_text(
        "import procly\n"
        "p = procly.get_context('spawn').Process(target=print)\n"
        "p.start(); p.join()\n"
        "print('exit', p.exitcode, flush=True)\n"
    )
    out = run_python([str(script)], cwd=tmp_path)
    assert "finished its bootstrapping phase" in out.stderr
    assert "exit 1" in out.stdout
