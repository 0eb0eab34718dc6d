"""Big-item segments are known to the resource tracker: when a queue's creator and every
process holding its big items are SIGKILLed, nothing is left in /dev/shm once the tree is
gone (nobody is alive to reap the queue's own tables, so the tracker must)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

import procly
from procly._proc import _tracker

# Run as its own process tree (no PROCLY_TRACKER in its environment: it starts its own
# tracker, which exits once this tree is gone).  The creator makes the queue, a forked child
# puts two big items, the creator receives one and keeps it mapped; then both block until
# the test SIGKILLs them.
_TREE = """
import os, sys, time
import numpy as np
import procly

def produce(q, w):
    q.put(np.ones(100_000))
    q.put(np.arange(200_000))
    os.write(w, b"p")
    time.sleep(3600)  # killed by the test

if __name__ == "__main__":
    ctx = procly.get_context("fork")
    q = ctx.Queue()
    r, w = os.pipe()
    p = ctx.Process(target=produce, args=(q, w))
    p.start()
    os.read(r, 1)
    held = q.get(timeout=60)  # keeps its segment mapped
    assert held.sum() == 100_000
    print(p.pid, q._ring.name, flush=True)
    time.sleep(3600)  # killed by the test
"""


def _ours() -> set[str]:
    prefix = os.environ["PROCLY_NAME_PREFIX"]
    return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}


def test_big_items_reclaimed_after_whole_tree_is_killed() -> None:
    before = _ours()
    env = {k: v for k, v in os.environ.items() if k != _tracker.ENV_VAR}
    tree = subprocess.Popen(
        [sys.executable, "-c", _TREE], env=env, stdout=subprocess.PIPE, text=True
    )
    child = 0
    try:
        assert tree.stdout is not None
        line = tree.stdout.readline()
        assert line, "the process tree failed before it was ready"
        pid, ring = line.split()
        child = int(pid)
        created = _ours() - before
        assert ring in created
        # one received (mapped by the creator) and one still queued
        assert len([n for n in created if "-i-" in n]) == 2
    finally:
        for victim in (child, tree.pid):
            if victim:
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        tree.wait(30)
        if tree.stdout is not None:
            tree.stdout.close()
    deadline = time.monotonic() + 30
    while _ours() - before and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded poll: the tree's tracker reclaims asynchronously
    assert _ours() - before == set()


def test_spare_segments_are_tracked_and_freed_with_the_queue() -> None:
    """A recycled (spare) segment survives its receiver dropping the item, is reused, and
    goes with the queue."""
    q = procly.Queue()
    for _ in range(3):
        q.put(np.ones(50_000))
        assert q.get(timeout=30).sum() == 50_000  # dropped at once: its segment goes spare
    spares = [n for n in _ours() if "-i-" in n]
    assert len(spares) == 1  # one segment, reused every time
    _tracker.sync()
    pins, uses, holds = _tracker._query("shm", spares[0]) or (-1, -1, -1)
    assert (pins, uses, holds) == (0, 0, 1)  # kept by a hold only, not by this process
    q.close()
    del q
    deadline = time.monotonic() + 30
    while any("-i-" in n for n in _ours()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any("-i-" in n for n in _ours())
