"""procly._os._reentry.Section: finalizers on the thread inside defer, other threads wait,
and the window between taking the lock and entering is safe."""

from __future__ import annotations

import threading

import pytest

from procly._os._reentry import Section


def test_same_thread_reentry_is_refused_not_deadlocked() -> None:
    section = Section()
    assert section.enter()
    try:
        assert section.inside
        assert not section.enter()  # a finalizer interrupting us: defer
        assert section.inside  # the refusal did not leave the section
    finally:
        section.leave()
    assert not section.inside
    assert section.enter()  # and it can be entered again
    section.leave()


def test_context_manager_rejects_reentry() -> None:
    section = Section()
    with section, pytest.raises(RuntimeError, match="re-entered"):
        section.__enter__()
    assert not section.inside


def test_other_threads_wait_for_the_section() -> None:
    section = Section()
    entered = threading.Event()
    left = threading.Event()
    assert section.enter()

    def other() -> None:
        assert section.enter()  # waits, then enters: never refused
        entered.set()
        section.leave()
        left.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert not entered.wait(0.05)  # still blocked while we are inside
    section.leave()
    thread.join(timeout=10)
    assert entered.is_set() and left.is_set()


def test_reentry_in_the_window_before_entering_runs_at_once() -> None:
    """The lock is taken but the flag not yet set (where a collection may strike): a nested
    enter succeeds, so the finalizer does its work at once instead of deadlocking."""
    section = Section()
    section._lock.acquire()
    try:
        assert section.enter()
        section.leave()
    finally:
        section._lock.release()
    assert section.enter()
    section.leave()
