"""The resource tracker process itself (the client side and the lifecycle rules are in
:mod:`procly._proc._tracker`).

It runs as a bare script (``python -I -S .../_tracker_server.py procly._proc._tracker FD ADDR``)
so that it starts in milliseconds and needs only the standard library: nothing here may
import procly.  It accepts connections from processes of the same user, applies the
messages of each connection to one :class:`_Registry`, unlinks a name once nothing refers
to it, and exits when its last connection is gone.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

Key = tuple[str, str]
#: Kinds of named kernel objects the tracker can unlink (as in the client module).
KINDS = ("shm", "sem")

_LINUX = sys.platform.startswith("linux")
#: The label the client puts first on the command line (process listings show it).
_LABEL = "procly._proc._tracker"
#: How long the tracker lets messages accumulate after a burst (see :func:`main`).
_BATCH_PAUSE_S = 0.002


def _unlink(kind: str, name: str) -> bool:
    """Unlink *name*; False if it did not exist (a name registered ahead of its creation,
    see the client's ``register_new``, that was never created: nothing to report)."""
    path = name if name.startswith("/") else "/" + name
    if _LINUX:  # what glibc's shm_unlink / sem_unlink do
        try:
            os.unlink("/dev/shm" + path if kind == "shm" else "/dev/shm/sem." + path[1:])
        except FileNotFoundError:
            return False
        return True
    import posix_ipc  # type: ignore[import-not-found]  # pragma: no cover - macOS

    try:  # pragma: no cover - macOS
        if kind == "shm":
            posix_ipc.unlink_shared_memory(path)
        else:
            posix_ipc.unlink_semaphore(path)
    except posix_ipc.ExistentialError:  # pragma: no cover
        return False
    return True  # pragma: no cover


@dataclass(eq=False)  # identity: a connection is itself
class _Conn:
    sock: socket.socket
    buf: bytes = b""
    clean: bool = False
    uses: Counter[Key] = field(default_factory=Counter)
    pins: set[Key] = field(default_factory=set)


@dataclass
class _Res:
    owned: bool = False
    pins: int = 0
    uses: int = 0
    holds: set[str] = field(default_factory=set)
    dirty: bool = False  # its creator died without saying goodbye
    pinners: list[_Conn] = field(default_factory=list)


class _Registry:
    """Tracker-side bookkeeping: which connection refers to which name, and how."""

    def __init__(self) -> None:
        self.res: dict[Key, _Res] = {}
        self.early: set[str] = set()  # releases that overtook their hold
        self.reclaimed: list[Key] = []
        # Holds taken on behalf of a parent name (a queue's big items): dropped when the
        # parent is reclaimed.  parent -> {(child, token)}, and token -> parent.
        self.children: dict[Key, set[tuple[Key, str]]] = {}
        self.parent_of: dict[str, Key] = {}

    def handle(self, conn: _Conn, line: str) -> bytes | None:
        parts = line.split()
        if not parts:
            return None
        op = parts[0]
        if op == "P":
            return b"P\n"
        if op == "B":
            conn.clean = True
            return None
        if len(parts) < 3 or parts[1] not in KINDS:
            return None
        key: Key = (parts[1], parts[2])
        if op == "Q":
            q = self.res.get(key)
            return f"{q.pins} {q.uses} {len(q.holds)}\n".encode() if q else b"- - -\n"
        res = self.res.setdefault(key, _Res())
        if op in ("C", "A"):
            res.owned = True
        if op == "C" and key not in conn.pins:
            conn.pins.add(key)
            res.pins += 1
            res.pinners.append(conn)
        if op in ("C", "A", "U"):
            conn.uses[key] += 1
            res.uses += 1
        elif op == "D" and conn.uses[key] > 0:
            conn.uses[key] -= 1
            res.uses -= 1
        elif op == "X":
            # Unlinked: nothing left to reclaim, so drop the pins too; the entry goes
            # once its last use is released (bounded bookkeeping for long-lived creators).
            res.owned = False
            for pinner in res.pinners:
                pinner.pins.discard(key)
            res.pins = 0
            res.pinners.clear()
        elif op == "H" and len(parts) in (4, 5):
            token = parts[3]
            if token in self.early:
                self.early.discard(token)
            elif len(parts) == 4:
                res.holds.add(token)
            else:
                parent: Key = (key[0], parts[4])
                # A parent already reclaimed (or never known) keeps nothing alive: the hold
                # is void, so the name goes with its other references.
                if parent in self.res:
                    res.holds.add(token)
                    self.children.setdefault(parent, set()).add((key, token))
                    self.parent_of[token] = parent
        elif op == "R" and len(parts) == 4:
            token = parts[3]
            if token in res.holds:
                res.holds.discard(token)
                owner = self.parent_of.pop(token, None)
                if owner is not None:
                    self.children[owner].discard((key, token))
            else:
                self.early.add(token)
        self.check(key)
        return None

    def drop(self, conn: _Conn) -> None:
        """A connection ended: drop everything it held.

        A reclaim is worth a warning when the creator died without saying goodbye, or when
        the death of a process is what released the name; not when a clean program simply
        left the cleanup to the tracker.
        """
        for key in set(conn.uses) | conn.pins:
            res = self.res.get(key)
            if res is None:
                continue
            res.uses -= conn.uses.get(key, 0)
            if key in conn.pins:
                res.pins -= 1
                res.pinners.remove(conn)
                if not conn.clean:
                    res.dirty = True
            self.check(key, died=not conn.clean)

    def check(self, key: Key, *, died: bool = False) -> None:
        res = self.res.get(key)
        if res is None or res.uses > 0 or res.pins > 0 or res.holds:
            return
        del self.res[key]
        if res.owned and _unlink(*key) and (res.dirty or died):
            self.reclaimed.append(key)
        for child, token in self.children.pop(key, ()):
            # The parent is gone: so are the holds it kept (a queue's undelivered items).
            self.parent_of.pop(token, None)
            kept = self.res.get(child)
            if kept is not None and token in kept.holds:
                kept.holds.discard(token)
                self.check(child, died=died or res.dirty)


def _warn(keys: list[Key]) -> None:
    """Report reclaimed names as a :class:`procly.errors.ResourceLeakWarning` would print
    (the tracker runs without the procly package, so the text is written directly)."""
    for kind, name in keys:
        msg = (
            f"{_LABEL}: ResourceLeakWarning: procly reclaimed {kind} {name!r}, "
            "left behind by a process that died\n"
        )
        with contextlib.suppress(OSError):
            sys.stderr.write(msg)
            sys.stderr.flush()


def _same_user(sock: socket.socket) -> bool:
    if not hasattr(socket, "SO_PEERCRED"):  # pragma: no cover - macOS: filesystem perms
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def main(listen_fd: int, addr: str) -> None:
    """Run the tracker until its last connection is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(os, "SCHED_BATCH"):
        # A batch task does not preempt the running one when it wakes: a process that
        # registers a name goes on running instead of yielding the CPU to the tracker
        # (on 2 cores that switch cost ~20 us per message).  It still gets its fair share.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    listener = socket.socket(fileno=listen_fd)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    reg = _Registry()
    conns: list[_Conn] = []
    seen_any = False
    try:
        while True:
            replied = False
            for skey, _ in sel.select():
                if skey.data is None:
                    while True:
                        try:
                            sock, _ = listener.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        if not _same_user(sock):
                            sock.close()
                            continue
                        conn = _Conn(sock)
                        conns.append(conn)
                        sel.register(sock, selectors.EVENT_READ, conn)
                        seen_any = True
                    continue
                conn = skey.data
                try:
                    data = conn.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(conn.sock)
                    conn.sock.close()
                    conns.remove(conn)
                    reg.drop(conn)
                else:
                    conn.buf += data
                    *lines, conn.buf = conn.buf.split(b"\n")
                    for raw in lines:
                        reply = reg.handle(conn, raw.decode(errors="replace"))
                        if reply:
                            replied = True
                            with contextlib.suppress(OSError):
                                conn.sock.sendall(reply)
            if reg.reclaimed:
                _warn(reg.reclaimed)
                reg.reclaimed.clear()
            if conns and not replied:
                # Let messages pile up for a moment: a sender whose reader is not waiting
                # in select() wakes nobody, so registering costs it a plain write instead
                # of a context switch on every message (matters on few cores).  Round trips
                # (sync, queries) skip the pause.
                time.sleep(_BATCH_PAUSE_S)
            if seen_any and not conns:
                # Last one gone; a connection may still sit in the backlog.
                try:
                    sock, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn = _Conn(sock)
                conns.append(conn)
                sel.register(sock, selectors.EVENT_READ, conn)
    finally:
        listener.close()
        for key, res in list(reg.res.items()):
            if res.owned:
                _unlink(*key)
        if not addr.startswith("@"):  # pragma: no cover - macOS socket file
            with contextlib.suppress(OSError):
                os.unlink(addr)
                os.rmdir(os.path.dirname(addr))


if __name__ == "__main__":
    main(int(sys.argv[2]), sys.argv[3])
