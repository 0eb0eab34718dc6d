"""Waiting for results, and reporting errors raised by result callbacks.

:class:`ResultWaiter` lets ``Pool`` results (plain flags set by the dispatcher thread) be
waited for without one :class:`threading.Event` per task.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable

__all__ = ("ResultWaiter", "report_sink_error")


class ResultWaiter:
    """Where callers wait for results that report through plain flags (``Pool`` results).

    The dispatcher notifies once per round in which it delivered something, and only if
    someone waits, instead of setting one :class:`threading.Event` per task (that costs
    about 3 us a task); while more results are already waiting to be read it first reads
    those (for at most a few milliseconds), so that a caller collecting a stream of results
    is woken once per burst, not once per round.  A waiter checks its flag and waits under :attr:`cond`, and the
    dispatcher sets flags before it notifies, so no wake-up is lost.
    """

    __slots__ = ("cond", "waiters")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.waiters = 0

    def wait_for(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``ready()`` or *timeout* seconds pass; returns ``ready()``."""
        if ready():
            return True
        cond = self.cond
        with cond:
            self.waiters += 1
            try:
                if timeout is None:
                    while not ready():
                        cond.wait()
                else:
                    deadline = time.monotonic() + timeout
                    while not ready():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        cond.wait(left)
            finally:
                self.waiters -= 1
        return ready()

    def notify(self) -> None:
        """Wake every waiter (after setting the flags they wait for)."""
        if self.waiters:
            with self.cond:
                self.cond.notify_all()


def report_sink_error() -> None:
    """A callback raised: print it like an unhandled thread exception, keep serving."""
    print("Exception in a procly pool callback:", file=sys.stderr)
    traceback.print_exc()
