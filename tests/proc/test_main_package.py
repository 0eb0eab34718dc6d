"""Beyond the standard library: functions defined in a package's ``__main__`` (``python -m
pkg``) reach spawn and forkserver children by value (the stdlib's children fail with
AttributeError, since nobody re-imports a package's __main__); and a forkserver child whose
process object cannot be rebuilt reports why on stderr, as a spawned child does."""

from __future__ import annotations

from pathlib import Path

from _support.subproc import run_python

PKG_MAIN = '''
import sys
import procly

def target(tag):
    print("ran", tag, flush=True)

if __name__ == "__main__":
    ctx = procly.get_context(sys.argv[1])
    p = ctx.Process(target=target, args=("A",))
    p.start()
    p.join()
    print("exitcode", p.exitcode, flush=True)
'''


def test_function_from_a_package_main_runs_in_the_child(tmp_path: Path, start_method: str) -> None:
    pkg = tmp_path / "mainpkg_m"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(PKG_MAIN)
    out = run_python(["-m", "mainpkg_m", start_method], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["ran A", "exitcode 0"], out.stdout + out.stderr


BROKEN = '''
import procly

def explode():
    raise RuntimeError("cannot be rebuilt over there")

class Bomb:
    def __reduce__(self):
        return (explode, ())

if __name__ == "__main__":
    ctx = procly.get_context({method!r})
    p = ctx.Process(target=print, args=(Bomb(),))
    p.start()
    p.join()
    print("exitcode", p.exitcode, flush=True)
'''


def test_child_that_cannot_rebuild_its_process_reports_why(tmp_path: Path) -> None:
    for method in ("spawn", "forkserver"):
        script = tmp_path / f"broken_{method}.py"
        script.write_text(BROKEN.format(method=method))
        out = run_python([str(script)], cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "exitcode 1", method
        assert "RuntimeError: cannot be rebuilt over there" in out.stderr, (method, out.stderr)
