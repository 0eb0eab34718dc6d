"""BaseManager: starts (or connects to) a server process and makes proxies (layer 3).

::

    parent process                          manager server process (start())
    +-----------------------------+         +-------------------------------+
    | BaseManager.start()         |--Pipe-->| _run_server: initializer,     |
    |   waits for the address  <--+---------+ bind, send address back,      |
    | manager.dict() -> "create" -+--sock-->| serve_forever()               |
    | shutdown(): "shutdown",     |         | exits when told to shut down  |
    |   join, terminate if stuck  |         +-------------------------------+
    +-----------------------------+

* ``start()`` runs the server in a child of the manager's context (its start method); the
  child ignores SIGINT so that Ctrl-C in a terminal reaches the program, not the manager.
* ``connect()`` only talks to a server someone else started (remote managers).
* ``get_server()`` builds the server in *this* process: ``serve_forever()`` then serves
  until a client asks for shutdown, and exits the process, as in the standard library.

A manager trusts every authenticated client (requests are pickles): keep its address on
loopback or a Unix socket (the default) unless the authkey is secret.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import ProcessError
from .._proc._connection import Pipe
from .._proc._context import DEFAULT_CONTEXT
from .._proc._finalize import Finalize
from .._proc._process import AuthenticationString, BaseProcess
from . import _wire
from ._proxy import CLIENT, RETURN, AutoProxy, BaseProxy, Token, default_authkey, raise_for
from ._server import Server

__all__ = ("BaseManager", "State")


class State:
    """The lifecycle of a manager: ``INITIAL`` -> ``STARTED`` -> ``SHUTDOWN``."""

    __module__ = "procly.managers"
    __slots__ = ("value",)
    INITIAL, STARTED, SHUTDOWN = 0, 1, 2

    def __init__(self) -> None:
        self.value = State.INITIAL


class BaseManager:
    """A server process holding shared objects, and the factory of proxies to them.

    Drop-in for :class:`multiprocessing.managers.BaseManager`.  *address* is a Unix socket
    path or a ``(host, port)`` pair (``None``: a fresh Unix socket in a private directory);
    *authkey* defaults to ``current_process().authkey``.  Raises :class:`ValueError` for a
    serializer other than ``"pickle"`` and :class:`TypeError` for a non-bytes authkey.
    """

    __module__ = "procly.managers"
    _registry: dict[str, tuple[Any, Any, Any, Any]] = {}
    _Server = Server

    def __init__(
        self,
        address: Any = None,
        authkey: bytes | None = None,
        serializer: str = "pickle",
        ctx: Any = None,
        *,
        shutdown_timeout: float = 1.0,
    ) -> None:
        if authkey is None:
            authkey = default_authkey()
        if not isinstance(authkey, bytes):
            raise TypeError(f"authkey should be a byte string, not {type(authkey).__name__}")
        if serializer != "pickle":
            raise ValueError(
                f"procly managers support serializer='pickle' only, not {serializer!r}"
            )
        if address is not None:
            _wire.family_of(address)  # ValueError now rather than in the server
        self._address = address
        self._authkey = AuthenticationString(authkey)
        self._state = State()
        self._serializer = serializer
        self._ctx = ctx
        self._shutdown_timeout = shutdown_timeout
        self._process: BaseProcess | None = None

    # -- starting, connecting, serving -------------------------------------------------------

    def get_server(self) -> Server:
        """A :class:`Server` for this manager, to run in this process with ``serve_forever()``.

        Raises :class:`~procly.ProcessError` unless the manager is neither started nor
        connected.
        """
        self._check_initial()
        return self._Server(
            self._registry, self._address, bytes(self._authkey), self._serializer, self._ctx
        )

    def connect(self) -> None:
        """Connect to a server that is already running at ``address``.

        Raises :class:`ConnectionRefusedError` / :class:`FileNotFoundError` when none listens
        there and :class:`~procly.AuthenticationError` for a wrong authkey.
        """
        if self._address is None:
            raise ProcessError("the manager has no address to connect to")
        # Always a fresh handshake with this manager's own key (never a borrowed connection).
        CLIENT.adopt(self._address, _wire.connect(self._address, bytes(self._authkey)))
        self._request("dummy")
        self._state.value = State.STARTED

    def start(
        self, initializer: Callable[..., object] | None = None, initargs: Iterable[Any] = ()
    ) -> None:
        """Start the server in a new process; ``initializer(*initargs)`` runs there first.

        Raises :class:`~procly.ProcessError` when already started or shut down,
        :class:`TypeError` for a non-callable initializer, and
        :class:`~procly.ProcessError` if the server process dies before it serves.
        """
        self._check_initial()
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        reader, writer = Pipe(duplex=False)
        if self._ctx is None:  # as the standard library: the default context
            self._ctx = DEFAULT_CONTEXT.get().get_context()
        process = self._ctx.Process(
            target=type(self)._run_server,
            args=(
                self._registry,
                self._address,
                self._authkey,
                self._serializer,
                writer,
                initializer,
                tuple(initargs),
                self._ctx,
            ),
        )
        process.name = type(self).__name__ + "-" + ":".join(str(i) for i in process._identity)
        self._process = process
        process.start()
        writer.close()
        try:
            self._address = reader.recv()
        except EOFError:
            process.join(self._shutdown_timeout)
            raise ProcessError(
                f"the manager's server process exited before serving (exit code {process.exitcode})"
            ) from None
        finally:
            reader.close()
        self._state.value = State.STARTED
        self.shutdown = Finalize(  # type: ignore[method-assign]
            self,
            type(self)._finalize_manager,
            args=(process, self._address, self._authkey, self._state, self._shutdown_timeout),
            exitpriority=0,
        )

    @classmethod
    def _run_server(
        cls,
        registry: dict[str, Any],
        address: Any,
        authkey: bytes,
        serializer: str,
        writer: Any,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        ctx: Any = None,
    ) -> None:
        """The server process's main: initializer, bind, report the address, serve."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the program, not us
        if initializer is not None:
            initializer(*initargs)
        server = cls._Server(registry, address, bytes(authkey), serializer, ctx)
        writer.send(server.address)
        writer.close()
        server.serve_forever()

    def _check_initial(self) -> None:
        if self._state.value == State.INITIAL:
            return
        if self._state.value == State.STARTED:
            raise ProcessError("Already started server")
        if self._state.value == State.SHUTDOWN:
            raise ProcessError("Manager has shut down")
        raise ProcessError(f"Unknown state {self._state.value!r}")

    # -- talking to the server ---------------------------------------------------------------

    def _request(self, name: str, *args: Any) -> Any:
        if self._address is None:
            raise ProcessError("the manager has no address: call start() or connect() first")
        kind, value = CLIENT.call(self._address, bytes(self._authkey), (None, name, args, {}))
        if kind != RETURN:
            raise_for(kind, value)
        return value

    def _create(self, typeid: str, /, *args: Any, **kwds: Any) -> tuple[Token, tuple[str, ...]]:
        """Create a shared object; its reference is already credited to this process."""
        if self._state.value != State.STARTED:
            raise ProcessError("server not yet started: call start() or connect() first")
        ident, exposed = self._request("create", typeid, args, kwds)
        return Token(typeid, self._address, ident), exposed

    def join(self, timeout: float | None = None) -> None:
        """Wait for the server process to exit (after ``shutdown``)."""
        if self._process is not None:
            self._process.join(timeout)
            if not self._process.is_alive():
                self._process = None

    def _debug_info(self) -> str:
        return str(self._request("debug_info"))

    def _number_of_objects(self) -> int:
        return int(self._request("number_of_objects"))

    def __enter__(self) -> BaseManager:
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            raise ProcessError(f"Unable to enter manager with state {self._state.value}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def shutdown(self) -> None:  # replaced by a Finalize once started
        """Stop the server process (no-op unless this manager started it)."""

    @staticmethod
    def _finalize_manager(
        process: BaseProcess, address: Any, authkey: bytes, state: State, timeout: float
    ) -> None:
        """Ask the server to stop; terminate, then kill it if it does not exit in time."""
        if process.is_alive():
            try:
                ch = _wire.connect(address, bytes(authkey), timeout=timeout)
                try:
                    ch.send_frame(_shutdown_request())
                    ch.recv_frame()
                finally:
                    ch.close()
            except Exception:
                pass
            process.join(timeout=timeout)
            if process.is_alive():
                process.terminate()
                process.join(timeout=timeout)
                if process.is_alive():
                    process.kill()
                    process.join()
        state.value = State.SHUTDOWN
        CLIENT.forget(address)

    @property
    def address(self) -> Any:
        """Where the server listens (known once started or given)."""
        return self._address

    @classmethod
    def register(
        cls,
        typeid: str,
        callable: Callable[..., Any] | None = None,
        proxytype: Any = None,
        exposed: Iterable[str] | None = None,
        method_to_typeid: dict[str, str] | None = None,
        create_method: bool = True,
    ) -> None:
        """Register a type (or callable) under *typeid*, and a ``manager.<typeid>(...)``
        method that creates a shared one and returns a proxy (unless *create_method* is
        false).  Raises :class:`TypeError` for a non-string *typeid*."""
        if not isinstance(typeid, str):
            raise TypeError(f"typeid must be a str, not {type(typeid).__name__}")
        if "_registry" not in cls.__dict__:
            cls._registry = cls._registry.copy()
        if proxytype is None:
            proxytype = AutoProxy
        exposed = exposed or getattr(proxytype, "_exposed_", None)
        method_to_typeid = method_to_typeid or getattr(proxytype, "_method_to_typeid_", None)
        if method_to_typeid:
            for key, value in method_to_typeid.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise TypeError(f"{key!r}: {value!r} in method_to_typeid is not str: str")
        cls._registry[typeid] = (
            callable,
            tuple(exposed) if exposed else None,
            method_to_typeid,
            proxytype,
        )
        if create_method:
            setattr(cls, typeid, _creator(typeid, proxytype))


def _creator(typeid: str, proxytype: Any) -> Callable[..., BaseProxy]:
    def create(self: BaseManager, /, *args: Any, **kwds: Any) -> BaseProxy:
        token, exposed = self._create(typeid, *args, **kwds)
        proxy: BaseProxy = proxytype(
            token,
            self._serializer,
            manager=self,
            authkey=self._authkey,
            exposed=exposed,
            incref=False,
        )
        return proxy

    create.__name__ = create.__qualname__ = typeid
    return create


def _shutdown_request() -> bytes:
    from .._serial._pickler import dumps

    return dumps((None, "shutdown", (), {}))
