"""The resource tracker: names are reclaimed once creator and users are gone, never before.

Each scenario runs small Python programs as separate process trees (``subprocess``), so a
test can SIGKILL a creator or a user at a precise point: each program reports over its
stdout and then blocks on its stdin until told to go on (or killed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import posix_ipc
import pytest

from procly._os._names import new_name
from procly._proc import _tracker

PRELUDE = """
import os, sys, posix_ipc
from procly._proc import _tracker as t
def create(name):
    posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, size=4096).close_fd()
def say(*words):
    print(*words, flush=True)
def wait():
    sys.stdin.readline()
"""


class Prog:
    """One Python program in its own process, driven line by line."""

    def __init__(self, body: str, *, own_tracker: bool = False) -> None:
        env = dict(os.environ)
        if own_tracker:
            env.pop(_tracker.ENV_VAR, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        out = self.proc.stdout.readline().strip()
        assert out, f"program ended early: {self.finish()[1]}"
        return out

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def finish(self) -> tuple[str, str]:
        """Close stdin, wait for exit; stderr is read to EOF, i.e. until every process
        that inherited it (a tracker this program started, too) has exited."""
        out, err = self.proc.communicate("", timeout=30)
        return out, err


def exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll *predicate* until true (a bounded wait on another process's progress)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def pins_gone(name: str) -> Callable[[], bool]:
    def check() -> bool:
        q = _tracker._query("shm", name)
        return q is None or q[0] == 0

    return check


@pytest.fixture
def name() -> Iterator[str]:
    # Programs find this process's tracker through the environment (one tree, one tracker).
    _tracker.ensure_running()
    n = new_name("s")
    yield n
    try:
        posix_ipc.unlink_shared_memory("/" + n)
    except posix_ipc.ExistentialError:
        pass


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown resource kind"):
        _tracker.register("file", "x")
    with pytest.raises(ValueError, match="invalid resource name"):
        _tracker.use("shm", "a b")
    with pytest.raises(ValueError, match="invalid resource name"):
        _tracker.register("shm", "")


def test_creator_killed_segment_survives_user_then_goes(name: str) -> None:
    creator = Prog(f"create({name!r}); t.register('shm', {name!r}); t.sync(); say('ok'); wait()")
    user = Prog(f"t.use('shm', {name!r}); t.sync(); say('ok'); wait()")
    try:
        assert creator.line() == "ok"
        assert user.line() == "ok"
        creator.kill()
        wait_until(pins_gone(name))
        assert exists(name), "unlinked while a user still holds it"
        user.kill()
        wait_until(lambda: not exists(name))
    finally:
        creator.kill()
        user.kill()
        creator.finish()
        user.finish()


def test_user_killed_creator_keeps_it_then_clean_exit_reclaims(name: str) -> None:
    creator = Prog(f"create({name!r}); t.register('shm', {name!r}); t.sync(); say('ok'); wait()")
    user = Prog(f"t.use('shm', {name!r}); t.sync(); say('ok'); wait()")
    try:
        assert creator.line() == "ok"
        assert user.line() == "ok"
        user.kill()
        wait_until(lambda: _tracker._query("shm", name) == (1, 1, 0))
        assert exists(name)
        creator.go()
        _, err = creator.finish()
        assert "Warning" not in err
        wait_until(lambda: not exists(name))
    finally:
        creator.kill()
        user.kill()
        user.finish()


def test_unregister_forgets(name: str) -> None:
    prog = Prog(
        f"create({name!r}); t.register('shm', {name!r}); t.unregister('shm', {name!r}); "
        "t.sync(); say('ok')"
    )
    assert prog.line() == "ok"
    prog.finish()
    wait_until(lambda: _tracker._query("shm", name) is None)
    assert exists(name), "an unregistered name is the caller's business"


def test_hold_keeps_name_until_released(name: str) -> None:
    creator = Prog(
        f"create({name!r}); t.register('shm', {name!r}); tok = t.hold('shm', {name!r}); "
        "t.sync(); say(tok); wait()"
    )
    try:
        token = creator.line()
        creator.go()
        creator.finish()
        # Creator gone cleanly, but the hold (a pickle in flight) keeps the name.
        wait_until(lambda: _tracker._query("shm", name) == (0, 0, 1))
        assert exists(name)
        _tracker.release_hold("shm", name, token)
        wait_until(lambda: not exists(name))
    finally:
        creator.kill()


def test_release_may_overtake_its_hold(name: str) -> None:
    _tracker.release_hold("shm", name, "tok1")
    _tracker.sync()
    prog = Prog(
        f"create({name!r}); t.register('shm', {name!r}, pin=False); "
        f"t._CLIENT.send('H shm {name} tok1'); t.release('shm', {name!r}); "
        "t.sync(); say('ok')"
    )
    assert prog.line() == "ok"
    prog.finish()
    wait_until(lambda: not exists(name))


def test_unpinned_is_reference_counted(name: str) -> None:
    prog = Prog(
        f"create({name!r}); t.register('shm', {name!r}, pin=False); t.sync(); say('a'); wait(); "
        f"t.release('shm', {name!r}); t.sync(); say('b'); wait()"
    )
    try:
        assert prog.line() == "a"
        assert exists(name)
        prog.go()
        assert prog.line() == "b"
        assert not exists(name), "unlinked as soon as the last use was released"
    finally:
        prog.kill()
        prog.finish()


def test_forked_child_reregisters_inherited_handles(name: str) -> None:
    prog = Prog(
        f"""
        create({name!r}); t.register('shm', {name!r}); t.sync()
        pid = os.fork()
        if pid == 0:
            say('child', os.getpid()); wait(); os._exit(0)
        say('parent', os.getpid()); wait()
        """
    )
    child_pid = 0
    try:
        seen = dict(prog.line().split() for _ in range(2))
        child_pid = int(seen["child"])
        # the child registered its inherited handle before the fork returned
        assert _tracker._query("shm", name) == (1, 2, 0)
        prog.kill()  # the creator dies; its forked child still holds the segment
        wait_until(pins_gone(name))
        assert exists(name)
        os.kill(child_pid, signal.SIGKILL)
        wait_until(lambda: not exists(name))
    finally:
        prog.kill()
        if child_pid:
            try:
                os.kill(child_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        prog.finish()


def test_whole_tree_killed_own_tracker_reclaims_and_warns(name: str) -> None:
    prog = Prog(
        f"""
        create({name!r}); t.register('shm', {name!r}); t.sync()
        pid = os.fork()
        if pid == 0:
            t.use('shm', {name!r}); t.sync(); say('child', os.getpid()); wait(); os._exit(0)
        say('parent', os.getpid(), t.address()); wait()
        """,
        own_tracker=True,
    )
    child_pid = 0
    try:
        lines = [prog.line().split() for _ in range(2)]
        child_pid = next(int(w[1]) for w in lines if w[0] == "child")
        addr = next(w[2] for w in lines if w[0] == "parent")
        assert addr != os.environ.get(_tracker.ENV_VAR)
        os.kill(child_pid, signal.SIGKILL)
        prog.kill()
        # stderr reaches EOF only once the tracker (which inherited it) exited
        _, err = prog.finish()
        assert not exists(name)
        assert "ResourceLeakWarning" in err
        assert name in err
    finally:
        prog.kill()
        if child_pid:
            try:
                os.kill(child_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_clean_exit_without_unlink_reclaims_silently(name: str) -> None:
    prog = Prog(f"create({name!r}); t.register('shm', {name!r}); say('ok')", own_tracker=True)
    assert prog.line() == "ok"
    _, err = prog.finish()
    assert not exists(name)
    assert err == ""


def test_tracker_exits_with_last_connection() -> None:
    prog = Prog("say(t.ensure_running())", own_tracker=True)
    addr = prog.line()
    prog.finish()  # stderr EOF: tracker gone too
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(OSError):
        s.connect("\0" + addr[1:])
    s.close()


def test_unlinked_entries_do_not_accumulate(name: str) -> None:
    posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, size=4096).close_fd()
    _tracker.register("shm", name)
    _tracker.unregister("shm", name)
    assert _tracker._query("shm", name) == (0, 1, 0)  # pin gone, our handle still counts
    _tracker.release("shm", name)
    assert _tracker._query("shm", name) is None
    assert exists(name), "an unregistered name is the caller's business"


def test_registered_before_creation_creator_killed_at_once_leaks_nothing() -> None:
    """``register_new``: the tracker knows a name before it exists, so a creator SIGKILLed
    right after creating leaks nothing; the reserved names it never created are unlinked
    silently (only the real segment is reported)."""
    prog = Prog(
        """
        from procly.shared_memory import SharedMemory
        made = SharedMemory(create=True, size=4096)
        say(made.name); wait()
        """,
        own_tracker=True,
    )
    try:
        made = prog.line()
        assert exists(made)
        prog.kill()
        _, err = prog.finish()  # stderr EOF: the program's own tracker has exited
        assert not exists(made)
        assert err.count("ResourceLeakWarning") == 1
        assert made in err
    finally:
        prog.kill()


def test_register_new_reserves_names_ahead_and_unregister_drops_one() -> None:
    _tracker.ensure_running()
    name = _tracker.register_new("shm", lambda: new_name("s"))
    try:
        assert not exists(name)  # registered before anything exists under it
        assert _tracker._query("shm", name) == (1, 1, 0)
        spare = _tracker._CLIENT.reserve[("C", "shm")][-1]
        assert _tracker._query("shm", spare) == (1, 1, 0)  # the next one is known already
    finally:
        _tracker.unregister("shm", name)
        _tracker.release("shm", name)
    assert _tracker._query("shm", name) is None


def test_parent_releasing_right_after_fork_does_not_reclaim_under_the_child(name: str) -> None:
    """The child re-registers inherited handles on its own connection, which the tracker
    may read after the parent's release: the parent's hold taken at fork bridges that."""
    posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, size=4096).close_fd()
    _tracker.register("shm", name, pin=False)  # reference counted: reclaimed at zero uses
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(go_w)
            os.read(go_r, 1)
            _tracker.goodbye()
        finally:
            os._exit(0)
    os.close(go_r)
    try:
        _tracker.release("shm", name)  # at once, racing the child's re-registration
        _tracker.sync()
        assert exists(name), "reclaimed while the forked child still had it"
    finally:
        os.write(go_w, b"g")
        os.close(go_w)
        os.waitpid(pid, 0)
    wait_until(lambda: not exists(name))  # the child's goodbye was its last use


def test_hold_tied_to_a_parent_goes_with_the_parent(name: str) -> None:
    parent, orphan = new_name("s"), new_name("s")
    for n in (name, parent, orphan):
        posix_ipc.SharedMemory("/" + n, posix_ipc.O_CREX, size=4096).close_fd()
        _tracker.register("shm", n, pin=False)
    try:
        _tracker.hold("shm", name, parent=parent)
        _tracker.release("shm", name)
        assert _tracker._query("shm", name) == (0, 0, 1)  # kept by the hold alone
        assert exists(name)
        _tracker.release("shm", parent)  # the parent's last use: it goes, and the hold too
        _tracker.sync()
        assert not exists(parent) and not exists(name)
        # a hold tied to a parent that is already gone keeps nothing alive
        _tracker.hold("shm", orphan, parent=parent)
        _tracker.release("shm", orphan)
        _tracker.sync()
        assert not exists(orphan)
    finally:
        for n in (parent, orphan):
            try:
                posix_ipc.unlink_shared_memory("/" + n)
            except posix_ipc.ExistentialError:
                pass
