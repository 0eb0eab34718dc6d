"""Listener/Client: families, authentication (nothing unpickled before it), bad input."""

from __future__ import annotations

import os
import pickle
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import procly
from procly.connection import (
    Client,
    Connection,
    Listener,
    address_type,
    answer_challenge,
    deliver_challenge,
)

KEY = b"secret key"


class Trace:
    """Unpickling it writes a file: proof that something was (not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_leave_trace, (self.path,))


def _leave_trace(path: str) -> str:
    Path(path).write_text("unpickled")
    return path


def _client_child(address: Any, authkey: bytes | None) -> None:
    with Client(address, authkey=authkey) as conn:
        conn.send(("hello", os.getpid()))
        conn.send(conn.recv() * 2)


def _serve_once(listener: Listener, results: list[Any]) -> threading.Thread:
    def run() -> None:
        try:
            with listener.accept() as conn:
                results.append(conn.recv())
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _addresses() -> list[tuple[str, Callable[[Path], Any]]]:
    cases: list[tuple[str, Callable[[Path], Any]]] = [
        ("unix-path", lambda tmp: str(tmp / "sock")),
        ("inet", lambda tmp: ("127.0.0.1", 0)),
        ("default", lambda tmp: None),
    ]
    if sys.platform.startswith("linux"):
        cases.append(("abstract", lambda tmp: f"\0procly-test-{secrets.token_hex(6)}"))
    return cases


@pytest.mark.parametrize(("kind", "make"), _addresses(), ids=[c[0] for c in _addresses()])
def test_listener_and_client_with_authkey_across_a_process(
    kind: str, make: Callable[[Path], Any], tmp_path: Path, start_method: str
) -> None:
    ctx = procly.get_context(start_method)
    with Listener(make(tmp_path), authkey=KEY) as listener:
        process = ctx.Process(target=_client_child, args=(listener.address, KEY))
        process.start()
        try:
            with listener.accept() as conn:
                assert conn.recv() == ("hello", process.pid)
                conn.send(21)
                assert conn.recv() == 42
            assert listener.last_accepted is not None or kind != "inet"
        finally:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()
        assert process.exitcode == 0


def test_no_authkey_means_no_handshake(tmp_path: Path) -> None:
    results: list[Any] = []
    with Listener(str(tmp_path / "s")) as listener:
        thread = _serve_once(listener, results)
        with Client(listener.address) as conn:
            conn.send("plain")
        thread.join()
    assert results == ["plain"]


def test_empty_authkey_still_authenticates(tmp_path: Path) -> None:
    results: list[Any] = []
    with Listener(str(tmp_path / "s"), authkey=b"") as listener:
        thread = _serve_once(listener, results)
        with Client(listener.address, authkey=b"") as conn:
            conn.send(1729)
        thread.join()
    assert results == [1729]


def test_wrong_authkey_fails_on_both_ends(tmp_path: Path) -> None:
    results: list[Any] = []
    with Listener(str(tmp_path / "s"), authkey=KEY) as listener:
        thread = _serve_once(listener, results)
        with pytest.raises(procly.AuthenticationError):
            Client(listener.address, authkey=b"wrong")
        thread.join()
        # the listener survives a failed client
        thread = _serve_once(listener, results)
        with Client(listener.address, authkey=KEY) as conn:
            conn.send("good")
        thread.join()
    assert isinstance(results[0], procly.AuthenticationError)
    assert results[1] == "good"


def test_listener_unpickles_nothing_from_an_unauthenticated_peer(tmp_path: Path) -> None:
    """A peer that sends a pickle instead of answering the challenge: the listener refuses it
    without unpickling (the trace file is never written)."""
    trace = tmp_path / "trace"
    results: list[Any] = []
    with Listener(str(tmp_path / "s"), authkey=KEY) as listener:
        thread = _serve_once(listener, results)
        with Client(listener.address) as rogue:  # no authkey: skips the handshake
            rogue.send(Trace(str(trace)))  # where the answer to the challenge should be
            try:
                while True:  # the challenge, the failure notice, then EOF
                    rogue.recv_bytes()
            except (EOFError, OSError):
                pass
        thread.join()
    assert isinstance(results[0], procly.AuthenticationError)
    assert not trace.exists(), "nothing was unpickled"


def test_client_unpickles_nothing_from_an_unauthenticated_server(tmp_path: Path) -> None:
    trace = tmp_path / "trace"

    def rogue_server(listener: Listener) -> None:
        with listener.accept() as conn:
            conn.send(Trace(str(trace)))  # instead of a challenge
            try:
                conn.recv_bytes()
            except (EOFError, OSError):
                pass

    with Listener(str(tmp_path / "s")) as listener:
        thread = threading.Thread(target=rogue_server, args=(listener,))
        thread.start()
        with pytest.raises(procly.AuthenticationError, match="expected a challenge"):
            Client(listener.address, authkey=KEY)
        thread.join()
    assert not trace.exists()


def test_oversized_handshake_message_is_refused_unread() -> None:
    a, b = procly.Pipe()
    with a, b:
        big = b"#CHALLENGE#{sha256}" + b"x" * 10_000
        a.send_bytes(big)
        with pytest.raises(OSError, match="bad message length"):
            answer_challenge(b, KEY)


def test_challenge_functions_over_a_pipe_and_bad_keys() -> None:
    a, b = procly.Pipe()
    with a, b:
        thread = threading.Thread(target=answer_challenge, args=(b, KEY))
        thread.start()
        deliver_challenge(a, KEY)
        thread.join()
        with pytest.raises(ValueError, match="bytes"):
            deliver_challenge(a, "text")  # type: ignore[arg-type]
        a.send_bytes(b"#CHALLENGE#{md5}" + b"n" * 20)
        with pytest.raises(procly.AuthenticationError, match="digest"):
            answer_challenge(b, KEY)


def test_listener_bad_input_and_lifecycle(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not recognized"):
        Listener(family="AF_PIPE")
    with pytest.raises(ValueError, match="not recognized"):
        Client(r"\\.\pipe\nope")
    with pytest.raises(TypeError, match="byte string"):
        Listener(str(tmp_path / "a"), authkey="text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="byte string"):
        Client(str(tmp_path / "a"), authkey="text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unrecognized"):
        address_type(42)
    with pytest.raises(FileNotFoundError):
        Client(str(tmp_path / "nobody"))
    path = tmp_path / "sock"
    listener = Listener(str(path), "AF_UNIX", backlog=5)
    assert listener.address == str(path) and path.exists()
    assert listener.last_accepted is None
    listener.close()
    listener.close()
    assert not path.exists(), "close removes the socket file"
    with pytest.raises(OSError, match="listener is closed"):
        listener.accept()
    with pytest.raises(OSError):
        Listener(str(tmp_path / "missing-dir" / "sock"))


def test_default_address_lives_in_a_private_directory_removed_on_close() -> None:
    listener = Listener()
    directory = Path(listener.address).parent
    assert address_type(listener.address) == "AF_UNIX"
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    listener.close()
    assert not directory.exists()


def test_inet_listener_reports_its_real_port() -> None:
    with Listener(("127.0.0.1", 0)) as listener:
        host, port = listener.address
        assert host == "127.0.0.1" and port > 0
        results: list[Any] = []
        thread = _serve_once(listener, results)
        with Client((host, port)) as conn:
            assert isinstance(conn, Connection)
            conn.send(pickle.dumps("nested"))
        thread.join()
        assert results == [pickle.dumps("nested")]
        assert listener.last_accepted[0] == "127.0.0.1"


def test_refused_tcp_connection() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(ConnectionRefusedError):
        Client(("127.0.0.1", port))
