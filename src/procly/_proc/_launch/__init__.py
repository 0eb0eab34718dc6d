"""Start methods (layer 1): how a :class:`~procly.process.BaseProcess` becomes a running child.

One interface, three implementations chosen by name (data, not ``if platform`` around
class bodies): :mod:`._fork`, :mod:`._spawn`, :mod:`._forkserver`.  The registry that maps
names to modules is :mod:`procly._proc._context`.

Contract of a :class:`Launcher`
-------------------------------

``launcher.start(process)`` creates the child and returns a :class:`Popen` handle.  It
must:

* run ``process._bootstrap(parent_sentinel)`` in the child and make its return value the
  child's exit status (``os._exit`` after fork, ``sys.exit`` after exec);
* make the child watch this process's lifeline (:mod:`procly._proc._lifeline`) so that it
  exits within a second of this process dying, ``SIGKILL`` included;
* (spawn, forkserver) pickle *process* with :func:`procly._serial._pickler.dumps` inside
  ``with spawning(), sending_fds() as channel:`` so reducers may call ``assert_spawning``
  and hand over descriptors; deliver ``channel.fds`` to the child in order and close this
  process's copies once the child has its own; in the child, unpickle inside
  ``with receiving_fds(fds_in_child_order):``;
* (spawn, forkserver) send the *preparation data* first (``sys.path``, ``sys.argv``,
  working directory, main module, start method) so the child can re-import the parent's
  ``__main__`` as ``__mp_main__`` before the process object, which may refer to it, is
  unpickled;
* raise :class:`~procly.errors.SerializationError` in the parent, before any child exists,
  when the process object does not pickle.

Contract of a :class:`Popen`
----------------------------

``pid`` and ``sentinel`` (a descriptor readable once the child has ended) are set when
``start`` returns.  ``poll()`` returns ``None`` while the child runs, then its exit code
(``-N`` when killed by signal ``N``); ``wait(timeout)`` blocks up to *timeout* seconds and
returns what ``poll`` would; ``terminate``/``kill`` send ``SIGTERM``/``SIGKILL`` and do
nothing once the child has been reaped; ``close`` releases the sentinel.  All methods are
safe to call from several threads.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs every spawned child ~3 ms

if TYPE_CHECKING:
    from typing import Protocol

    from .._process import BaseProcess

__all__ = ("Launcher", "Popen")


if TYPE_CHECKING:  # interfaces for the type checker; nothing needs them at run time

    class Popen(Protocol):
        """Parent-side handle of one started child (see the module docstring)."""

        pid: int
        sentinel: int
        returncode: int | None

        def poll(self) -> int | None: ...
        def wait(self, timeout: float | None = None) -> int | None: ...
        def terminate(self) -> None: ...
        def kill(self) -> None: ...
        def close(self) -> None: ...


    class Launcher(Protocol):
        """One start method (see the module docstring)."""

        name: str

        def start(self, process: BaseProcess) -> Popen: ...
