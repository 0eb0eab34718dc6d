"""The local backend's launchers: workers are procly processes of the pool's context.

A pool replaces lost workers through a *fork helper*: a process started once, at the first
replacement, that forks each replacement worker on request (under ``fork`` everywhere;
under ``spawn`` and ``forkserver`` on Linux, see below)::

    parent (dispatcher thread)                     fork helper (one thread)
    ──────────────────────────                     ────────────────────────
    fork_helper(setup, modules) ── starts ──────>  apply the workers' environment, import
                                                   the task functions' modules
    <── "U"  (it has a thread of the user's: the pool stops using helpers; not under fork)
    ForkHelper.launch(end)                         recvmsg -> Process(worker_main).start()
      "S" + worker's channel end (SCM_RIGHTS) ──>    = fork: the worker is its child
    <── "P" n pid   (worker n started)             poll([control, worker sentinels])
    ForkHelper.kill(n)  "K" n ──────────────────>  kill worker n
    <── "X" n code  (worker n ended: exit code)    reap worker n
    close control  ─────────────────────────────>  kill and reap the rest, exit

Why: forking the parent costs the parent itself, in the thread every result waits for --
the fork (its page tables, a millisecond or more with threads and a big heap) and then a
copy-on-write fault for every page it touches while the child lives.  A pool whose
workers keep dying (crashes, timeouts, ``max_tasks_per_child``) paid that for every
replacement; through the helper the parent sends one message and goes on, and the fork
runs in another process.

What it changes (documented in the Pool guide): under ``fork``, a replacement worker is a
copy of the parent *as it was when the helper started* -- at the pool's first replacement
-- not as it is at the moment of the replacement, as the standard library's are.  Objects
created in the parent after that point reach later workers only by pickling, as with
every other start method.  The initial workers are still forked by the parent itself (pool
start-up stays a plain fork).

Under ``spawn`` and ``forkserver`` the helper is started like a worker (a fresh
interpreter that imported the main module the same way) and each replacement is a fork of
it: a replacement costs a fork of a small, freshly prepared process (about 2 ms) instead
of a new interpreter (30 ms or more).  What a task sees is what a freshly started worker
sees, except that module-level state the preparation created (the main module's globals)
is the helper's copy rather than a new one: ``random`` reseeds itself at fork, and so
does NumPy's global generator here (:func:`_fresh_worker_main`), but a generator the main
module created at import is shared by every replacement.  Not on macOS, where forking a
process that has run arbitrary imports is unsafe (the reason spawn is its default): there
replacements are started by the pool's own start method.

The helper is a procly child of the parent, so it dies with it (lifeline); its workers are
forked by its only long-lived thread and die with it (``PR_SET_PDEATHSIG`` on Linux, the
lifeline elsewhere).  It reaps its workers and reports their exit codes, so crash reports
are the same as for workers forked by the parent.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

from ._channel import ChannelEnd
from ._supervisor import WorkerProcess
from ._worker import WorkerSetup, apply_environment, close_inherited, worker_main

__all__ = ("ForkHelper", "HelperWorker", "ProcessLauncher", "helper_supported")


def helper_supported(start_method: str) -> bool:
    """Whether a pool of *start_method* forks its replacements through a helper."""
    return start_method == "fork" or (
        sys.platform == "linux" and start_method in ("spawn", "forkserver")
    )


#: A helper's message: kind (S start, P pid, K kill, X exit, U unusable), worker number,
#: pid or code.
_MSG = struct.Struct("<cqq")
#: The start request's layout: its third field is the launch time (insights), NaN if none.
_START = struct.Struct("<cqd")


class ProcessLauncher:
    """Starts each worker as ``context.Process(target=worker_main)``.

    Workers are *not* daemonic (unlike the standard library's), so that a task may use a
    pool of its own (nesting is limited by :data:`~._worker.MAX_POOL_DEPTH`).  They still
    never outlive their pool: the engine kills them when it ends, at interpreter exit
    (before procly joins non-daemonic children), and procly's lifeline ends them if the
    parent is killed.
    """

    def __init__(self, context: Any, name: str = "procly-worker") -> None:
        self._context = context
        self._name = name
        self._count = 0

    def launch(self, end: ChannelEnd, setup: WorkerSetup) -> WorkerProcess:
        self._count += 1
        proc = self._context.Process(
            target=worker_main,
            args=(end, setup),
            name=f"{self._name}-{self._count}",
            daemon=False,
        )
        proc.start()
        return proc  # type: ignore[no-any-return]

    def fork_helper(
        self,
        setup: WorkerSetup,
        ours: socket.socket,
        theirs: socket.socket,
        modules: tuple[str, ...] = (),
    ) -> ForkHelper | None:
        """Start a :class:`ForkHelper` (a process of this launcher's context, see
        :func:`helper_supported`; ``None`` where unsupported) talking over the
        ``SOCK_SEQPACKET`` pair *ours*/*theirs*.  *setup* is the workers' setup; its
        ``close_fds`` are the parent's descriptors the helper closes first (*ours* among
        them); it imports *modules* before it forks (see :func:`helper_main`).  Closes
        *theirs* here once the helper holds it."""
        method = self._context.get_start_method()
        if not helper_supported(method):
            return None
        fresh = method != "fork"
        proc = self._context.Process(
            target=helper_main,
            args=(
                ChannelEnd(theirs.fileno()),
                setup,
                self._context.get_context("fork"),
                self._name,
                self._count,
                fresh,
                modules,
            ),
            name=f"{self._name}-fork-helper",
            daemon=False,
        )
        proc.start()
        theirs.close()
        return ForkHelper(proc, ours)


class HelperWorker:
    """A worker started by a :class:`ForkHelper` (a :class:`~._supervisor.WorkerProcess`).

    Its exit is reported by the helper, not by a sentinel of its own (:attr:`sentinel` is
    -1): the engine polls :meth:`ForkHelper.fileno` instead and learns of exits from
    :attr:`ForkHelper.exited`.
    """

    __slots__ = ("_helper", "_pid", "exitcode", "never_started", "number")

    sentinel = -1

    def __init__(self, helper: ForkHelper, number: int) -> None:
        self._helper = helper
        self.number = number
        self._pid: int | None = None
        self.exitcode: int | None = None
        #: The helper refused to fork it (``unusable``): it never ran, so the tasks sent to
        #: it are given to other workers instead of failing.
        self.never_started = False

    @property
    def pid(self) -> int | None:
        """The worker's pid (waits for the helper to report it; ``None`` if it died)."""
        if self._pid is None:
            self._helper.wait(lambda: self._pid is not None or self.exitcode is not None, None)
        return self._pid

    def kill(self) -> None:
        self._helper.kill(self)

    def join(self, timeout: float | None = None) -> None:
        self._helper.wait(lambda: self.exitcode is not None, timeout)

    def __repr__(self) -> str:
        return f"<HelperWorker #{self.number} pid={self._pid} exitcode={self.exitcode}>"


class ForkHelper:
    """The parent's side of a fork helper (see the module docstring); a launcher.

    Used by the dispatcher thread, except :attr:`HelperWorker.pid`, which may wait from
    any thread: reading the control socket is serialised by a lock.
    """

    def __init__(self, proc: Any, control: socket.socket) -> None:
        self._proc = proc
        self._control = control
        self._lock = threading.Lock()
        self._workers: dict[int, HelperWorker] = {}
        self._next = 0
        #: Workers whose end was reported and that the engine has not handled yet.
        self.exited: list[HelperWorker] = []
        #: The helper is gone (its workers died with it); start a new one if needed.
        self.broken = False
        #: The helper refused to fork (see :func:`helper_main`): do not start another.
        self.unusable = False

    def fileno(self) -> int:
        return self._control.fileno()

    def launch(self, end: ChannelEnd, setup: WorkerSetup) -> HelperWorker:
        """Have the helper fork a worker serving *end*.  Returns at once.

        The helper's own copy of the pool's setup applies; of *setup* only ``launched``
        (the insights clock) travels, as it is per launch."""
        if self.broken:
            raise OSError("the pool's fork helper is gone")
        worker = HelperWorker(self, self._next)
        launched = math.nan if setup.launched is None else setup.launched
        socket.send_fds(self._control, [_START.pack(b"S", self._next, launched)], [end.fd])
        self._workers[self._next] = worker
        self._next += 1
        return worker

    def kill(self, worker: HelperWorker) -> None:
        if worker.exitcode is None and not self.broken:
            try:
                self._control.send(_MSG.pack(b"K", worker.number, 0))
            except OSError:
                pass

    def pump(self) -> None:
        """Read every message already received (never blocks)."""
        with self._lock:
            self._read(block=False)

    def wait(self, done: Any, timeout: float | None) -> None:
        """Read messages until ``done()`` or *timeout* seconds pass or the helper is gone."""
        if done() or self.broken:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = select.poll()
        poller.register(self._control, select.POLLIN)
        while not done() and not self.broken:
            with self._lock:
                if done():
                    return
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not poller.poll(None if left is None else left * 1000 + 0.5):
                    return
                self._read(block=False)
            if left == 0.0:
                return

    def _read(self, block: bool) -> None:
        flags = 0 if block else socket.MSG_DONTWAIT
        while not self.broken:
            try:
                data = self._control.recv(_MSG.size, flags)
            except BlockingIOError:
                return
            except ConnectionResetError:
                # The helper ended with our requests unread: Linux reports that first, then
                # what it sent before it ended, then the end of file.
                continue
            except OSError:
                data = b""
            if len(data) != _MSG.size:  # end of file: the helper is gone, so are its workers
                self.broken = True
                for worker in self._workers.values():
                    worker.never_started = self.unusable
                self.exited.extend(self._workers.values())
                self._workers.clear()
                return
            kind, number, value = _MSG.unpack(data)
            if kind == b"U":
                self.unusable = True  # the helper ends next (end of file follows)
                continue
            found = self._workers.get(number)
            if found is None:  # pragma: no cover - protocol error
                continue
            if kind == b"P":
                found._pid = value
            elif kind == b"X":
                found.exitcode = value
                del self._workers[number]
                self.exited.append(found)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the helper (it kills and reaps the workers it still has) and reap it."""
        with self._lock:
            self.broken = True
        try:
            self._control.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._proc.join(timeout)
        if self._proc.exitcode is None:  # pragma: no cover - a stuck helper
            self._proc.kill()
            self._proc.join(timeout)
        self._control.close()


def _fresh_worker_main(end: ChannelEnd, setup: WorkerSetup) -> None:
    """:func:`~._worker.worker_main` for a worker forked by the helper of a ``spawn`` or
    ``forkserver`` pool: reseed NumPy's global generator first (``random`` reseeds itself
    at fork), as a freshly started worker would have its own."""
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        try:
            np_random.seed()
        except Exception:  # pragma: no cover - a NumPy without the legacy global
            pass
    worker_main(end, setup)


def helper_main(
    control_end: ChannelEnd,
    setup: WorkerSetup,
    context: Any,
    name: str,
    count: int,
    fresh: bool = False,
    modules: tuple[str, ...] = (),
) -> None:
    """The fork helper's loop (runs in the helper process; see the module docstring).
    *context* is the ``fork`` context it starts workers with; *fresh*: the pool's start
    method is not ``fork`` (its workers reseed NumPy, see :func:`_fresh_worker_main`).

    *modules*, those of the task functions sent so far, are imported first: every worker
    would import them to unpickle its first task, and each would pay for it (under
    ``spawn``/``forkserver`` the helper starts with only the main module; under ``fork``
    they are imported already).  One that fails to import is left to the workers, which
    report the error with the task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    close_inherited(setup.close_fds)
    # once here, inherited by every worker (see WorkerSetup); before the imports, so that
    # native thread pools they start are limited as in a worker
    apply_environment(setup)
    control = control_end.socket()
    control_fd = control.fileno()
    for module in modules:
        if module not in sys.modules:
            try:
                importlib.import_module(module)
            except BaseException:  # the workers raise it again, with the task
                continue
    if fresh and threading.active_count() > 1:
        # The main module or an import started a thread: forking now could copy a lock it
        # holds.  Under spawn/forkserver the workers would never have been forked from
        # such a process, so the pool goes back to starting them by its own method.
        # (procly's own lifeline watcher is a bare _thread, not counted here.)
        control.send(_MSG.pack(b"U", -1, 0))
        return
    target = _fresh_worker_main if fresh else worker_main
    # its workers close the helper's end of the control socket (and nothing else)
    setup = dataclasses.replace(
        setup, close_fds=((control_fd, os.fstat(control_fd).st_ino),), environment_ready=True
    )
    poller = select.poll()
    poller.register(control_fd, select.POLLIN)
    by_sentinel: dict[int, tuple[int, Any]] = {}
    by_number: dict[int, Any] = {}
    try:
        while True:
            for fd, _ in poller.poll():
                if fd != control_fd:
                    number, proc = by_sentinel.pop(fd)
                    poller.unregister(fd)
                    del by_number[number]
                    proc.join()
                    code = proc.exitcode
                    proc.close()
                    control.send(_MSG.pack(b"X", number, code if code is not None else 255))
                    continue
                msg, fds, _flags, _addr = socket.recv_fds(control, _MSG.size, 1)
                if len(msg) != _MSG.size:
                    return  # the pool ended
                kind, number, _ = _MSG.unpack(msg)
                if kind == b"K":
                    proc = by_number.get(number)
                    if proc is not None:
                        proc.kill()
                    continue
                count += 1
                end = ChannelEnd(fds[0])
                launched = _START.unpack(msg)[2]
                own = setup
                if setup.launched is not None:
                    own = dataclasses.replace(setup, launched=launched)
                proc = context.Process(
                    target=target, args=(end, own), name=f"{name}-{count}", daemon=False
                )
                try:
                    proc.start()
                except Exception:  # reported as a worker that died at once
                    control.send(_MSG.pack(b"X", number, 255))
                    continue
                finally:
                    os.close(fds[0])
                by_sentinel[proc.sentinel] = (number, proc)
                by_number[number] = proc
                poller.register(proc.sentinel, select.POLLIN)
                control.send(_MSG.pack(b"P", number, proc.pid))
    finally:
        for proc in by_number.values():
            proc.kill()
        for proc in by_number.values():
            proc.join()
