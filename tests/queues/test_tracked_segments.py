"""Big-item segments are known to the resource tracker: when a queue's creator and every
process holding its big items are SIGKILLed, nothing is left in /dev/shm once the tree is
gone (nobody is alive to reap the queue's own tables, so the tracker must); and when a
queue loses its last user (closed, collected or killed), its undelivered items go at once,
while the rest of the tree lives on."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from typing import Any

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


# -- a queue that loses its last user frees its undelivered big items ---------------------------


def _queue_names(q: Any) -> set[str]:
    """The queue's own segment plus every big-item segment of this run."""
    return {n for n in _ours() if n == q._ring.name or "-i-" in n}


def _tracker_caught_up() -> None:
    """Return once the tracker has handled everything that happened before this call,
    including the end of connections of processes already reaped: the first round trip is
    answered while the tracker handles one batch of ready sockets (those dead connections
    are in it, but maybe after ours); the second is only read in a later batch."""
    _tracker.sync()
    _tracker.sync()


def test_queue_collected_in_its_creator_frees_queued_items() -> None:
    q = procly.Queue()
    q.put(np.ones(100_000))
    q.put_many([np.zeros(50_000), b"x" * (1 << 20)])
    names = _queue_names(q)
    assert len(names) == 4  # the ring and three queued items
    del q
    gc.collect()
    _tracker_caught_up()
    assert not names & _ours()


def _take_one_and_report(q: Any, go: Any, report: Any) -> None:
    assert go.get(timeout=60) == "go"
    arr = q.get(timeout=60)
    report.put(float(arr.sum()))
    q.close()


def test_items_outlive_the_creators_queue_while_another_user_has_it(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q, go, report = ctx.Queue(), ctx.Queue(), ctx.Queue()
    q.put(np.ones(100_000))
    q.put(np.full(100_000, 2.0))
    names = _queue_names(q)
    child = ctx.Process(target=_take_one_and_report, args=(q, go, report))
    child.start()
    del q  # the child still uses the queue: nothing may go
    gc.collect()
    try:
        _tracker_caught_up()
        assert names <= _ours()
        go.put("go")
        assert report.get(timeout=60) == 100_000.0
    finally:
        child.join(60)
    assert child.exitcode == 0
    _tracker_caught_up()
    assert not names & _ours()  # the second item, never taken, went with the last user


def _put_then_close(q: Any) -> None:
    q.put(np.ones(100_000))
    q.close()


def test_closing_by_every_user_frees_queued_items(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q = ctx.Queue()
    child = ctx.Process(target=_put_then_close, args=(q,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert q.qsize() == 1
    names = _queue_names(q)
    assert len(names) == 2  # the ring and the queued item
    _tracker_caught_up()
    assert names <= _ours()  # the creator still uses it
    q.close()
    _tracker_caught_up()
    assert not names & _ours()


def _produce_and_wait(q: Any, ready: Any) -> None:
    for i in range(3):
        q.put(np.full(100_000, float(i)))
    ready.put("produced")
    time.sleep(3600)  # SIGKILLed by the test


def _hold_one_and_wait(q: Any, ready: Any) -> None:
    held = q.get(timeout=60)  # keeps its segment mapped
    ready.put(("holding", float(held[0])))
    time.sleep(3600)  # SIGKILLed by the test


def test_producer_and_consumer_killed_with_items_queued_frees_everything(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    q, ready = ctx.Queue(), ctx.Queue()
    producer = ctx.Process(target=_produce_and_wait, args=(q, ready))
    consumer = ctx.Process(target=_hold_one_and_wait, args=(q, ready))
    producer.start()
    consumer.start()
    ring = q._ring.name
    del q  # the creator lets go: only the two children use the queue now
    gc.collect()
    try:
        assert sorted(map(str, [ready.get(timeout=60), ready.get(timeout=60)])) == [
            "('holding', 0.0)",
            "produced",
        ]
        names = {ring} | {n for n in _ours() if "-i-" in n}
        assert len(names) == 4  # the ring, one item held by the consumer, two queued
        _tracker_caught_up()
        assert names <= _ours()
    finally:
        for p in (producer, consumer):
            p.kill()
            p.join(60)
    _tracker_caught_up()
    assert not names & _ours()  # while this process tree lives on
