"""A block freed by a garbage collection that runs on the thread inside the heap's lock (a
collection during malloc) is deferred, not deadlocked, and returned by the next malloc."""

from __future__ import annotations

import threading

from procly._shm import _heap


def test_free_from_inside_the_heaps_critical_section_is_deferred() -> None:
    heap = _heap._HEAP
    block = heap.malloc(64)
    arena, offset = block.arena, block.offset
    done = threading.Event()

    def collect_inside_malloc() -> None:
        nonlocal block
        with heap.section:  # what malloc enters before allocating
            del block  # the finalizer runs here, on the thread inside the section
        done.set()

    worker = threading.Thread(target=collect_inside_malloc)
    worker.start()
    worker.join(timeout=10)
    assert done.is_set(), "the finalizer deadlocked on the heap lock"
    assert (arena, offset, 64) in heap.deferred
    again = heap.malloc(64)  # takes the deferred free first, then reuses the space
    assert not heap.deferred
    assert (again.arena, again.offset) == (arena, offset)


def test_free_between_taking_the_lock_and_entering_runs_at_once() -> None:
    """A collection right after malloc took the section's lock but before it marked itself
    inside (the window that used to deadlock): the free is applied at once, not deferred."""
    heap = _heap._HEAP
    block = heap.malloc(64)
    arena, offset = block.arena, block.offset
    done = threading.Event()

    def collect_in_the_window() -> None:
        nonlocal block
        heap.section._lock.acquire()  # Section.enter()'s first step
        try:
            del block
        finally:
            heap.section._lock.release()
        done.set()

    worker = threading.Thread(target=collect_in_the_window)
    worker.start()
    worker.join(timeout=10)
    assert done.is_set(), "the finalizer deadlocked on the heap's lock"
    assert (arena, offset, 64) not in heap.deferred
    again = heap.malloc(64)
    assert (again.arena, again.offset) == (arena, offset)
