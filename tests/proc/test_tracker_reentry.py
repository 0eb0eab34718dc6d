"""A finalizer that runs on the thread holding the tracker client's lock (a garbage
collection in the middle of a send) must not deadlock: its message is deferred and leaves
with the next one."""

from __future__ import annotations

import threading

from procly._os._names import new_name
from procly._proc import _tracker


def test_message_from_inside_the_clients_critical_section_is_deferred_not_deadlocked() -> None:
    client = _tracker._CLIENT
    name = new_name("s")
    _tracker.register("shm", name, pin=False)  # reference counted: one use, ours
    assert _tracker._query("shm", name) == (0, 1, 0)
    done = threading.Event()

    def inside() -> None:
        with client.held():  # what a send does; a GC finalizer fires here
            _tracker.release("shm", name)  # must return at once, not wait for the lock
        done.set()

    worker = threading.Thread(target=inside)
    worker.start()
    worker.join(timeout=10)
    assert done.is_set(), "release from inside the critical section deadlocked"
    assert _tracker._query("shm", name) is None  # the deferred release left with the query
