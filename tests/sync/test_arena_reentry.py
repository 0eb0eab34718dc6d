"""A primitive collected on the thread inside the slot registry's lock (a garbage collection
during allocate) defers its release instead of deadlocking."""

from __future__ import annotations

import threading

from procly._sync import _arena


def test_release_from_inside_the_registrys_critical_section_is_deferred() -> None:
    registry = _arena.REGISTRY
    slot = registry.allocate()
    done = threading.Event()

    def collect_inside_allocate() -> None:
        with registry.section:  # what allocate enters
            registry.release(slot)  # what the finalizer calls
        done.set()

    worker = threading.Thread(target=collect_inside_allocate)
    worker.start()
    worker.join(timeout=10)
    assert done.is_set(), "the release deadlocked on the registry lock"
    assert slot in registry.deferred
    again = registry.allocate()  # applies the deferred release first, then reuses the slot
    assert not registry.deferred
    assert (again.arena, again.index) == (slot.arena, slot.index)
