"""Named shared-memory segments: :class:`SharedMemory` (layer 2).

::

    creator process                     user process (child, or anyone given the name)
    SharedMemory(create=True) --name--> SharedMemory(name)  (or: unpickled handle)
        |  register("shm", name)            |  use("shm", name) ... release on close()
        v                                   v
    +-------------------- resource tracker (procly._proc._tracker) ---------------+
    | unlinks the name once the creator process is gone and no process uses it,  |
    | also after SIGKILL; never while a user lives; unlink() makes it forget it   |
    +-----------------------------------------------------------------------------+

* **The creator** makes the segment (``shm_open`` + ``ftruncate``), maps it, and pins the
  name in the tracker for as long as the creator process lives.  A generated name is
  registered *before* the segment exists (``register_new``: one tracker message per many
  names), so creating sends nothing and a creator killed at any instant leaks nothing.
* **A user** maps an existing name and counts as one *use* until it calls :meth:`close`
  or dies.  Pickling a handle (a Process argument, through a Pipe or a Queue) sends only
  the name, plus a tracker *hold* that keeps the name alive until the receiver attached.
* **The tracker** is the only party that unlinks on behalf of others.

Differences from the standard library, on purpose: an attaching process never unlinks a
segment it did not create when it exits, and nothing warns at a clean exit.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import sys
from typing import Any

from .._os._names import new_name
from .._proc import _tracker

__all__ = ("SharedMemory",)

_LINUX_SHM_DIR = "/dev/shm"
_MODE = 0o600


def _kernel_name(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def _shm_open(name: str, flags: int) -> int:
    """``shm_open``: on Linux a plain open in ``/dev/shm`` (what glibc does), elsewhere
    through posix_ipc.  Raises the :class:`OSError` subclass matching errno, naming *name*."""
    kname = _kernel_name(name)
    if "/" in kname[1:] or len(kname) < 2:
        raise OSError(errno.EINVAL, "invalid shared memory name", kname)
    if sys.platform.startswith("linux"):
        try:
            return os.open(_LINUX_SHM_DIR + kname, flags | os.O_RDWR | os.O_NOFOLLOW, _MODE)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, kname) from None
    import posix_ipc  # type: ignore[import-not-found]  # pragma: no cover - macOS

    try:  # pragma: no cover - macOS
        seg = posix_ipc.SharedMemory(kname, flags, mode=_MODE)
    except posix_ipc.ExistentialError:  # pragma: no cover
        code = errno.EEXIST if flags & os.O_EXCL else errno.ENOENT
        raise OSError(code, os.strerror(code), kname) from None
    except posix_ipc.PermissionsError:  # pragma: no cover
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kname) from None
    return int(seg.fd)  # pragma: no cover


def shm_unlink(name: str) -> None:
    """``shm_unlink``; raises :class:`FileNotFoundError` if the name does not exist."""
    kname = _kernel_name(name)
    if sys.platform.startswith("linux"):
        try:
            os.unlink(_LINUX_SHM_DIR + kname)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, kname) from None
        return
    import posix_ipc  # pragma: no cover - macOS

    try:  # pragma: no cover
        posix_ipc.unlink_shared_memory(kname)
    except posix_ipc.ExistentialError:  # pragma: no cover
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), kname) from None


def _fresh_name() -> str:
    return new_name("s")


def _forget(name: str, *, lazy: bool = False) -> None:
    """Undo :func:`procly._proc._tracker.register_new` for *name*: nothing of ours is there."""
    _tracker.unregister("shm", name, lazy=lazy)
    _tracker.release("shm", name, lazy=lazy)


class SharedMemory:
    """A block of memory, named, that any process can map (drop-in for the standard
    library's ``multiprocessing.shared_memory.SharedMemory``).

    ``SharedMemory(name=None, create=False, size=0, *, track=True)``: with *create* a new
    segment of *size* bytes is made (a fresh unguessable name if *name* is ``None``);
    otherwise the existing segment *name* is attached and :attr:`size` is its size.

    Raises :class:`ValueError` for ``size < 0``, for ``size == 0`` with *create*, and for
    ``name=None`` without *create*; :class:`FileExistsError` when creating a name that
    exists; :class:`FileNotFoundError` when attaching to one that does not.

    With *track* (the default) the resource tracker reclaims the segment once the creating
    process is gone and no process still has it open, also after SIGKILL.  With
    ``track=False`` the segment is yours to :meth:`unlink`.
    """

    _buf: memoryview | None
    _mmap: mmap.mmap | None

    def __init__(
        self,
        name: str | None = None,
        create: bool = False,
        size: int = 0,
        *,
        track: bool = True,
        _pin: bool = True,
    ) -> None:
        if not size >= 0:
            raise ValueError("'size' must be a positive integer")
        if create and size == 0:
            raise ValueError("'size' must be a positive number different from zero")
        if name is None and not create:
            raise ValueError("'name' can only be None if create=True")
        self._track = track
        self._pin = _pin
        self._used = False
        self._mmap = None
        self._buf = None
        # Whether the tracker already counts this process as the creator (see below).
        registered = False
        if name is None:
            while True:
                if track:
                    # Registered before it exists (one tracker message per many names, and
                    # no instant where a created segment is unknown to the tracker).
                    name = _tracker.register_new("shm", _fresh_name, pin=_pin)
                    registered = True
                else:
                    name = _fresh_name()
                try:
                    fd = _shm_open(name, os.O_CREAT | os.O_EXCL)
                except BaseException as exc:
                    if registered:  # someone else's, or nothing: never reclaim it
                        _forget(name)
                        registered = False
                    if isinstance(exc, FileExistsError):
                        continue
                    raise
                break
        else:
            fd = _shm_open(name, os.O_CREAT | os.O_EXCL if create else 0)
        self._name = name
        self._key = _kernel_name(name)[1:]  # what the tracker calls it
        try:
            if create:
                os.ftruncate(fd, size)
                self._mmap = mmap.mmap(fd, size)
            else:
                self._mmap = mmap.mmap(fd, 0)  # the whole segment: mmap learns its size
                size = len(self._mmap)
        except BaseException:
            os.close(fd)
            if create:
                with contextlib.suppress(OSError):
                    shm_unlink(name)
                if registered:
                    _forget(name, lazy=True)
            raise
        os.close(fd)  # the mapping keeps the memory; handles travel by name
        self._size = size
        self._buf = memoryview(self._mmap)
        if track:
            if registered:
                pass
            elif create:
                # _pin=False: reference counted only (shared NumPy arrays)
                _tracker.register("shm", self._key, pin=_pin)
            else:
                _tracker.use("shm", self._key)
            self._used = True

    @property
    def name(self) -> str:
        """The name other processes attach with."""
        return self._name

    @property
    def size(self) -> int:
        """Size in bytes."""
        return self._size

    @property
    def buf(self) -> memoryview | None:
        """A writable :class:`memoryview` of the whole segment (``None`` after :meth:`close`)."""
        return self._buf

    def close(self) -> None:
        """Unmap the segment in this process; the segment itself stays (see :meth:`unlink`).

        Raises :class:`BufferError` while views of :attr:`buf` (e.g. NumPy arrays built on
        it) are still alive, like the standard library.
        """
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
        if self._used:
            self._used = False
            # A pinned name outlives this handle anyway: the release may wait for the next
            # message.  A reference-counted one (shared arrays) should go at once.
            _tracker.release("shm", self._key, lazy=self._pin)

    def unlink(self) -> None:
        """Remove the name; processes that have it mapped keep working, nobody new can attach.

        Raises :class:`FileNotFoundError` if the name is already gone.
        """
        shm_unlink(self._name)
        if self._track:
            _tracker.unregister("shm", self._key, lazy=True)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r}, size={self._size})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A hold keeps the name alive while the pickle travels (the sender may close its
        # handle or exit first); the receiver releases it once attached.  The tracker's
        # address travels too, for receivers whose environment predates it (forkserver).
        if not self._track:
            return _rebuild, (type(self), self._name, False, None, None, True)
        token = _tracker.hold("shm", self._key)
        return _rebuild, (type(self), self._name, True, token, _tracker.address(), self._pin)


def _rebuild(
    cls: type[SharedMemory],
    name: str,
    track: bool,
    token: str | None,
    tracker: str | None,
    pin: bool,
) -> SharedMemory:
    _tracker.adopt(tracker)
    try:
        return cls(name, track=track, _pin=pin)
    finally:
        if token is not None:
            _tracker.release_hold("shm", _kernel_name(name)[1:], token)


SharedMemory.__module__ = "procly.shared_memory"
