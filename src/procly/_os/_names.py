"""Names for the kernel objects procly creates (shared-memory segments, named semaphores).

Every name starts with one prefix, ``procly`` unless ``PROCLY_NAME_PREFIX`` says otherwise,
so that anything procly left in ``/dev/shm`` is recognisable, and so that the test suite
can give each run its own prefix and blame exactly the test that leaked.
"""

from __future__ import annotations

import os
import secrets

__all__ = ("name_prefix", "new_name")

#: POSIX allows 255 bytes, macOS only 31 for shm_open and semaphores: stay under 31.
MAX_NAME_LEN = 30


def name_prefix() -> str:
    """The prefix of every kernel-object name procly creates, read at each call."""
    return os.environ.get("PROCLY_NAME_PREFIX", "procly")


def new_name(kind: str) -> str:
    """A fresh, unguessable name such as ``procly-s-1a2b3c4d5e``; *kind* is one letter
    (``s`` segment, ``m`` semaphore, ...) that says what it names."""
    name = f"{name_prefix()}-{kind}-{secrets.token_hex(5)}"
    return name[-MAX_NAME_LEN:] if len(name) > MAX_NAME_LEN else name
