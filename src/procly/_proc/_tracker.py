"""The resource tracker: named kernel objects outlive no process tree (layer 1).

Shared-memory segments and named semaphores live in a global namespace: if the process
that created one is SIGKILLed, nothing in it can unlink the name, and ``/dev/shm`` fills
up.  One tracker process per process tree owns that cleanup::

    creator P            user C (fork/spawn/forkserver child, or any process with the env)
    +-----------+        +-----------+
    | _Client   |        | _Client   |     each process: one Unix-socket connection,
    +-----+-----+        +-----+-----+     opened lazily, messages fire-and-forget
          | "C shm n"          | "U shm n" ... "D shm n"
          v                    v
    +----------------------------------------------------------+
    | tracker  (_tracker_server.py, a bare script, own session)|
    |   listener --accept--> connections --lines--> _Registry  |
    |   EOF on a connection => that process is gone             |
    |   name with no pin, no use, no hold  => unlink it          |
    +----------------------------------------------------------+

* **A client process** (:class:`_Client`, one per process) connects on its first
  registration, to the address in ``PROCLY_TRACKER`` or, if none answers there, to a tracker
  it starts itself (and then puts the address in ``os.environ`` so that children started
  later find it).  After ``fork`` the child drops the parent's connection and, if it holds
  handles inherited through ``fork``, re-registers them on its own connection *before* it
  closes its copy of the parent's (a round trip), so that the parent dying at any moment
  never leaves a window where nobody holds the name; and the parent, just before forking,
  *holds* the names it uses (one message), which the child releases in that round trip, so
  that the parent *releasing* a name at once (a queue dropped right after starting a child)
  leaves no window either.
* **The tracker** (:mod:`._tracker_server`) accepts connections from processes of the same user, keeps per
  connection the names it pins, uses and holds, and reclaims (unlinks) a name once nothing
  refers to it.  It exits once its last connection is gone, so it never outlives the tree.
* **Lifecycle of a name** (a *key* is ``(kind, name)``):

  - ``register(kind, name)`` (``C``): this process created it.  The creator *pins* it until
    the creator process is gone, and holds one *use*.
  - ``register(kind, name, pin=False)`` (``A``): created, but reference counted only: it is
    reclaimed as soon as no process uses or holds it (shared NumPy arrays).
  - ``register_new(kind, make_name)``: the same two, for a name the process is *about* to
    create: names are registered :data:`_RESERVE` at a time, ahead of their creation, so
    creating costs no message and no instant after creation is unknown to the tracker.  A
    reserved name never created is unlinked as a no-op, without a warning.
  - ``use`` / ``release`` (``U`` / ``D``): a process attached / closed one handle.
  - ``hold`` / ``release_hold`` (``H`` / ``R``): a handle is in flight inside a pickle.  The
    receiver releases the hold once it attached; until then the name survives even the
    sender's exit (a worker that puts a result and exits is the common case).  A hold never
    released (a pickle never unpickled) lasts until the tracker exits with its tree.  A
    release may overtake its hold on another connection: the tracker remembers it.
  - ``hold(kind, name, parent=p)``: a hold that lasts at most as long as the name *p*: when
    *p* is reclaimed, its child holds are dropped (a queue's undelivered big items and
    spare segments go with the queue once its last user closed it or died).
  - ``unregister`` (``X``): the name was unlinked explicitly; forget it.

  A connection that ends (EOF) drops its pins and uses.  If it ended without the
  ``goodbye`` message (the process died) and something had to be reclaimed because of
  it, the tracker emits :class:`~procly.errors.ResourceLeakWarning` on its stderr.  Nothing is
  said at a clean exit.  Names that nobody ``register``-ed (only used) are never unlinked.

The stdlib tracker differs on both counts procly fixes: it warns about segments a clean
program left to it, and it unlinks a segment as soon as *any* process that attached it exits.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import secrets
import socket
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from typing import Any

from .._os._reentry import Section

__all__ = (
    "ENV_VAR",
    "KINDS",
    "address",
    "adopt",
    "ensure_running",
    "goodbye",
    "hold",
    "rearm_exit_hook",
    "register",
    "register_new",
    "release",
    "release_hold",
    "set_address",
    "sync",
    "unregister",
    "use",
)

#: Environment variable through which children find their tree's tracker.
ENV_VAR = "PROCLY_TRACKER"
#: Kinds of named kernel objects the tracker can unlink.
KINDS = ("shm", "sem")

Key = tuple[str, str]

_LINUX = sys.platform.startswith("linux")
#: In the tracker's command line, so that process listings show what it is.
_LABEL = "procly._proc._tracker"

#: Lazy messages a process keeps before it sends them anyway.
_MAX_PENDING = 256
#: Names :func:`register_new` registers per message, ahead of their creation.
_RESERVE = 16


# --------------------------------------------------------------------------- client side


_SPACE = re.compile(r"\s")


def _check(kind: str, name: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; expected one of {KINDS}")
    if not name or len(name) > 255 or _SPACE.search(name):
        raise ValueError(f"invalid resource name {name!r}")


def _abstract_ok() -> bool:
    return sys.platform.startswith("linux")


def _spawn_tracker() -> tuple[socket.socket, str]:
    """Start a tracker and return ``(connection to it, its address)``.

    The listener is bound and our connection queued in its backlog *before* the tracker
    runs, so messages sent right away wait in the socket: starting costs one
    ``posix_spawn``, not an interpreter start-up.
    """
    token = secrets.token_hex(8)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if _abstract_ok():
        addr = f"@procly-tracker-{os.getpid()}-{token}"
        listener.bind("\0" + addr[1:])
    else:  # pragma: no cover - macOS
        addr = os.path.join(tempfile.mkdtemp(prefix="procly-"), "tracker")
        listener.bind(addr)
    listener.listen(64)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(_sockaddr(addr))
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    env = dict(os.environ)
    env.pop(ENV_VAR, None)
    # This very file runs as a script, without importing the procly package: the tracker
    # starts in milliseconds.  On Linux it needs nothing beyond the standard library, so
    # it runs isolated and without site-packages.  The label argument is how process
    # listings (and the test-suite's leak guard) recognise it.
    flags = ["-I", "-S"] if _LINUX else ["-I"]
    argv = [sys.executable, *flags, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_tracker_server.py"), _LABEL, str(fd), addr]
    # Own session: a Ctrl-C or killpg aimed at the tree must not take the cleaner with it.
    os.posix_spawn(
        sys.executable,
        argv,
        env,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
        setsid=True,
    )
    listener.close()
    return conn, addr


def _sockaddr(addr: str) -> str:
    return "\0" + addr[1:] if addr.startswith("@") else addr


class _Client:
    """This process's connection to its tracker plus what it registered (for re-sending
    after ``fork`` or after the tracker was lost).  The one owner of client state;
    :meth:`reset` is the documented reset (tests)."""

    def __init__(self) -> None:
        # A garbage-collection finalizer (a segment or a lock released) can run on the very
        # thread inside ``self.section``; its message goes to ``deferred`` and leaves with the
        # next send, instead of deadlocking (see procly._os._reentry).  Finalizers only
        # release, so a delay can never cause a reclaim, only postpone one.
        self.section = Section()
        self.deferred: collections.deque[tuple[str, tuple[str, Key] | None]] = collections.deque()
        self.sock: socket.socket | None = None
        self.pid = os.getpid()
        self.uses: Counter[Key] = Counter()
        self.pins: set[Key] = set()
        self.autos: set[Key] = set()
        # (op, kind) -> names the tracker already counts as created by this process ("C" or
        # "A") that nothing was created under yet: see register_new().
        self.reserve: dict[tuple[str, str], list[str]] = {}
        self.pending: list[str] = []  # lazy messages not sent yet
        # (token, keys) of the holds taken for a child about to be forked (see before_fork)
        self.fork_hold: tuple[str, list[Key]] | None = None
        self.exit_hook: Any = None  # a procly Finalize that says goodbye
        # Set once this process said goodbye: later messages (finalizers running at
        # shutdown) are dropped rather than starting a new tracker.
        self.finished = False

    def held(self) -> Section:
        """The client's critical section, for calls that finalizers never make."""
        return self.section

    def _take_deferred(self) -> None:
        """Move messages deferred by finalizers into ``pending`` (call with the lock held)."""
        while self.deferred:
            line, record = self.deferred.popleft()
            if record is not None:
                self._record(*record)
            self.pending.append(line + "\n")

    # -- connection management (call inside self.section) ---------------------------------
    def _connect(self) -> socket.socket:
        if self.sock is not None and self.pid == os.getpid():
            return self.sock
        self.pid = os.getpid()
        addr = os.environ.get(ENV_VAR)
        sock: socket.socket | None = None
        if addr:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(_sockaddr(addr))
            except OSError:  # that tree's tracker is gone: start our own
                sock.close()
                sock = None
        if sock is None:
            sock, addr = _spawn_tracker()
            os.environ[ENV_VAR] = addr
        self.sock = sock
        return sock

    def send(self, line: str, *, record: tuple[str, Key] | None = None, lazy: bool = False) -> None:
        """Send one message; reconnect (and re-register) once if the tracker was lost.

        A *lazy* message waits in this process and leaves with the next eager one (or at
        :meth:`roundtrip` / :meth:`goodbye`): only for messages whose delay can postpone a
        reclaim but never cause one, since a process killed meanwhile never sends them.
        """
        if not self.section.enter():  # re-entered from a finalizer: see deferred
            self.deferred.append((line, record))
            return
        try:
            if lazy and self.pid == os.getpid() and len(self.pending) < _MAX_PENDING:
                if not self.finished:
                    if record is not None:
                        self._record(*record)
                    self.pending.append(line + "\n")
                return
            self._send_locked(line, record=record)
        finally:
            self.section.leave()

    def _send_locked(self, line: str, *, record: tuple[str, Key] | None = None) -> None:
        if self.finished and self.pid == os.getpid():
            return
        if record is not None:
            self._record(*record)
        if self.exit_hook is None or not self.exit_hook.still_active():
            self._arm_exit_hook()
        for attempt in (0, 1):
            fresh = self.sock is None or self.pid != os.getpid()
            sock = self._connect()
            if fresh:
                self.pending.clear()  # the replay below reflects them already
                self.reserve.clear()  # a new tracker never heard of them
            self._take_deferred()
            data = ("".join(self.pending) + line + "\n").encode()
            self.pending.clear()
            try:
                if fresh:
                    sock.sendall(self._replay(exclude=record))
                sock.sendall(data)
                return
            except OSError:
                self._drop()
                if attempt:
                    raise

    def take_new(self, op: str, kind: str, make_name: Callable[[], str]) -> str:
        """A name from the reservation of *op* (``C``/``A``) names of *kind*, refilled with
        one message of :data:`_RESERVE` fresh names when empty (see :func:`register_new`)."""
        if not self.section.enter():  # re-entered from a finalizer: defer as send does
            name = make_name()
            self.deferred.append((f"{op} {kind} {name}", (op, (kind, name))))
            return name
        try:
            names = self.reserve.get((op, kind))
            if not names:
                fresh = [make_name() for _ in range(_RESERVE)]
                for name in fresh:
                    _check(kind, name)
                self._send_locked("\n".join(f"{op} {kind} {name}" for name in fresh))
                names = self.reserve[(op, kind)] = fresh
            name = names.pop()
            self._record(op, (kind, name))
            return name
        finally:
            self.section.leave()

    def _arm_exit_hook(self) -> None:
        """Say goodbye at exit also in children that leave through ``os._exit`` after
        running finalizers (fork and forkserver children).  Re-armed when a child's
        bootstrap cleared the finalizers it inherited."""
        from ._finalize import Finalize

        self.exit_hook = Finalize(None, goodbye, exitpriority=-(2**30))

    def _record(self, op: str, key: Key) -> None:
        if op in ("C", "A", "U"):
            self.uses[key] += 1
            if op == "C":
                self.pins.add(key)
            elif op == "A":
                self.autos.add(key)
        elif op == "D":
            self.uses[key] -= 1
            if self.uses[key] <= 0:
                del self.uses[key]
                self.autos.discard(key)
        elif op == "X":
            self.pins.discard(key)
            self.autos.discard(key)

    def _replay(self, exclude: tuple[str, Key] | None) -> bytes:
        """What a fresh connection must say so the tracker knows what we hold."""
        uses = Counter(self.uses)
        pins = set(self.pins)
        autos = set(self.autos)
        if exclude is not None:  # the message being sent accounts for itself
            op, key = exclude
            if op in ("C", "A", "U"):
                uses[key] -= 1
            pins.discard(key)
            autos.discard(key)
        lines: list[str] = []
        for op, keys in (("C", pins), ("A", autos)):
            for key in keys:
                if uses[key] > 0:
                    lines.append(f"{op} {key[0]} {key[1]}")
                    uses[key] -= 1
        for (kind, name), count in uses.items():
            lines.extend(f"U {kind} {name}" for _ in range(count))
        return "".join(line + "\n" for line in lines).encode()

    def _drop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None

    def roundtrip(self, line: str = "P") -> str:
        """Ping the tracker and wait for the answer: everything sent before is processed."""
        with self.held():
            self._send_locked(line)
            if self.sock is None:  # finished: nothing to wait for
                return ""
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = self.sock.recv(16)
                if not chunk:
                    raise ConnectionError("the resource tracker went away")
                buf += chunk
            return buf.decode().strip()

    # -- lifecycle --------------------------------------------------------------------------
    def before_fork(self) -> None:
        """In the parent, right before ``fork``: hold every name the child inherits a use of
        (except names this process pins, which outlive it anyway), so that the parent
        releasing its own use before the child re-registered it cannot get the name
        reclaimed under the child (a queue or shared array dropped right after starting a
        child is the common case).  The child releases the holds once registered."""
        self.fork_hold = None
        if self.finished or self.sock is None:
            return  # nothing registered, so nothing to hold
        if self.pid != os.getpid():
            return
        keys = [key for key, n in self.uses.items() if n > 0 and key not in self.pins]
        if not keys:
            return
        token = secrets.token_hex(8)
        if not self.section.enter():
            return
        try:
            self._send_locked("\n".join(f"H {kind} {name} {token}" for kind, name in keys))
            self.fork_hold = (token, keys)
        except OSError:
            pass  # no tracker: nothing is reclaimed behind anyone's back either
        finally:
            self.section.leave()

    def after_fork_in_parent(self) -> None:
        self.fork_hold = None

    def after_fork_in_child(self) -> None:
        inherited = self.sock
        self.section = Section()  # another thread may have been inside at fork time
        self.deferred.clear()  # the parent's to send, not ours
        self.sock = None
        self.pid = os.getpid()
        self.finished = False
        self.pending = []  # the parent's to send, not ours
        self.pins.clear()  # the parent created them; we merely inherited handles
        self.autos.clear()
        self.reserve = {}  # the parent's names
        fork_hold, self.fork_hold = self.fork_hold, None
        try:
            if self.uses:
                # Re-register inherited handles, and keep the parent's connection open until
                # the tracker has seen them: a parent killed meanwhile cannot free the name.
                # Then drop the holds the parent took for us (see before_fork).
                released = ""
                if fork_hold is not None:
                    token, keys = fork_hold
                    released = "".join(f"R {kind} {name} {token}\n" for kind, name in keys)
                self.roundtrip(released + "P")
        finally:
            if inherited is not None:
                inherited.close()

    def goodbye(self) -> None:
        with self.held():
            self._take_deferred()
            self.finished = True
            if self.sock is not None and self.pid == os.getpid():
                with contextlib.suppress(OSError):
                    self.sock.sendall(("".join(self.pending) + "B\n").encode())
            self.pending = []
            self._drop()

    def reset(self) -> None:
        """Close the connection and forget every registration (tests only)."""
        self.goodbye()
        self.uses.clear()
        self.pins.clear()
        self.autos.clear()
        self.reserve.clear()
        self.finished = False


_CLIENT = _Client()
os.register_at_fork(
    before=_CLIENT.before_fork,
    after_in_parent=_CLIENT.after_fork_in_parent,
    after_in_child=_CLIENT.after_fork_in_child,
)


def _atexit() -> None:
    _CLIENT.goodbye()


import atexit  # noqa: E402 - kept beside its single use

atexit.register(_atexit)


def register(kind: str, name: str, *, pin: bool = True) -> None:
    """Record that this process created *name* (of *kind*: ``"shm"`` or ``"sem"``).

    With *pin* (the default) the tracker unlinks it once this process is gone *and* no
    other process uses or holds it, or never if :func:`unregister` is called first.  With
    ``pin=False`` it is reference counted only: this call counts as one :func:`use`, and the
    name is unlinked as soon as no process uses or holds it.  Raises :class:`ValueError`
    for an unknown kind or a name with whitespace.
    """
    _check(kind, name)
    op = "C" if pin else "A"
    _CLIENT.send(f"{op} {kind} {name}", record=(op, (kind, name)))


def register_new(kind: str, make_name: Callable[[], str], *, pin: bool = True) -> str:
    """A fresh name from *make_name*, registered as :func:`register` would *before* the
    caller creates anything under it; the caller must then create it exclusively
    (``O_EXCL``), or on failure call :func:`unregister` and :func:`release` for it.

    Why: the tracker hears of :data:`_RESERVE` names in one message, so creating a segment
    costs no message at all, and the no-leak guarantee gets stronger rather than weaker --
    the name is registered before it exists, so no instant after creation is uncovered.
    A name the process never created costs the tracker an unlink of nothing (silently).
    *make_name* must return unguessable names (a name someone else created is never
    reclaimed: the caller unregisters it when ``O_EXCL`` fails).
    """
    return _CLIENT.take_new("C" if pin else "A", kind, make_name)


def unregister(kind: str, name: str, *, lazy: bool = False) -> None:
    """Record that *name* was unlinked on purpose: the tracker forgets it.

    With *lazy* the message may leave with this process's next one (saves a write; the
    name is gone already, so a delay only keeps some bookkeeping).
    """
    key = (kind, name)
    if key not in _CLIENT.pins and key not in _CLIENT.autos:  # (known names were checked)
        _check(kind, name)
    _CLIENT.send(f"X {kind} {name}", record=("X", key), lazy=lazy)


def use(kind: str, name: str) -> None:
    """Record that this process opened one handle on *name* (it is not reclaimed while
    this process lives, until the matching :func:`release`)."""
    key = (kind, name)
    # If this process already holds the name (checked then), the tracker need not hear of
    # it at once.
    lazy = _CLIENT.uses.get(key, 0) > 0 and _CLIENT.pid == os.getpid()
    if not lazy:
        _check(kind, name)
    _CLIENT.send(f"U {kind} {name}", record=("U", key), lazy=lazy)


def release(kind: str, name: str, *, lazy: bool = False) -> None:
    """Record that this process closed one handle opened by :func:`use` or
    :func:`register`.

    With *lazy* the message may leave with this process's next one: right for a name
    someone pins (the creator lives on, or the delay only postpones a reclaim); wrong
    for reference-counted names whose memory should go at once.
    """
    key = (kind, name)
    if _CLIENT.uses.get(key, 0) <= 0:  # (a name in use was checked when first used)
        _check(kind, name)
        return  # nothing to release (double close): never drop someone else's count
    _CLIENT.send(f"D {kind} {name}", record=("D", key), lazy=lazy)


def hold(kind: str, name: str, *, parent: str | None = None) -> str:
    """Keep *name* alive while a handle to it travels inside a pickle; returns the token
    the receiver passes to :func:`release_hold` once it has attached.  The hold outlives
    the sender; one never released lasts until the tracker exits with the tree.

    With *parent* (a name of the same kind) the hold lasts at most as long as the parent:
    it is dropped when the tracker reclaims the parent (a queue's undelivered big items go
    with the queue), and void if the parent is already gone.
    """
    _check(kind, name)
    token = secrets.token_hex(8)
    if parent is None:
        _CLIENT.send(f"H {kind} {name} {token}")
    else:
        _check(kind, parent)
        _CLIENT.send(f"H {kind} {name} {token} {parent}")
    return token


def release_hold(kind: str, name: str, token: str) -> None:
    """Drop the hold *token* (from any process)."""
    _check(kind, name)
    _CLIENT.send(f"R {kind} {name} {token}")


def sync() -> None:
    """Wait until the tracker has processed everything this process sent.

    Raises :class:`ConnectionError` if the tracker vanished meanwhile.
    """
    _CLIENT.roundtrip()


def _query(kind: str, name: str) -> tuple[int, int, int] | None:
    """``(pins, uses, holds)`` the tracker counts for *name*, or ``None`` (tests only)."""
    _check(kind, name)
    answer = _CLIENT.roundtrip(f"Q {kind} {name}").split()
    return None if answer[0] == "-" else (int(answer[0]), int(answer[1]), int(answer[2]))


def goodbye() -> None:
    """Tell the tracker this process is ending cleanly (no leak warning on its account).

    Runs at interpreter exit; a child that leaves through ``os._exit`` should call it.
    """
    _CLIENT.goodbye()


def rearm_exit_hook() -> None:
    """Arm the goodbye at exit again after this process's finalizers were reset (a new
    child's bootstrap), if this process talks to a tracker: a forked child re-registers its
    inherited handles before the reset, and without a goodbye its clean exit would look
    like a death (a spurious leak warning, should it hold the last use of a name)."""
    if _CLIENT.sock is not None and _CLIENT.pid == os.getpid() and not _CLIENT.finished:
        _CLIENT._arm_exit_hook()


def ensure_running() -> str:
    """Connect (starting the tracker if needed) and return its address, so that children
    started from now on (including a forkserver) inherit it through the environment."""
    with _CLIENT.held():
        _CLIENT._connect()
    return os.environ[ENV_VAR]


def address() -> str | None:
    """The tracker address this process would use (``None`` before any is known)."""
    return os.environ.get(ENV_VAR)


def adopt(addr: str | None) -> None:
    """Use the tracker at *addr* (the sender's, carried inside a pickled handle) unless
    this process already talks to one: a forkserver child, whose environment predates the
    tracker, thereby joins its parent's tree."""
    if addr and (_CLIENT.sock is None or _CLIENT.pid != os.getpid()):
        os.environ[ENV_VAR] = addr


def set_address(addr: str) -> None:
    """Adopt the tracker at *addr* (a start method passing it to a child explicitly)."""
    os.environ[ENV_VAR] = addr
