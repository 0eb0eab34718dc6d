"""Property: with any number of producers and consumers, any item sizes (small ones through
the ring, big ones through their own segments), single and batch operations interleaved at
random, every item is delivered exactly once and each producer's items arrive in order."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import procly
from procly._queues._queue import INLINE_MAX

_SIZES = st.one_of(st.integers(0, 64), st.integers(65, 5000), st.just(INLINE_MAX + 1))


def _producer(q: Any, pid: int, sizes: list[int], batch_every: int) -> None:
    items = [(pid, seq, b"p" * size) for seq, size in enumerate(sizes)]
    i = 0
    while i < len(items):
        if batch_every and i % batch_every == 0:
            q.put_many(items[i : i + batch_every])
            i += batch_every
        else:
            q.put(items[i])
            i += 1


def _consumer(q: Any, out: Any, batch: int) -> None:
    seen: list[tuple[int, int, int]] = []
    while True:
        got = q.get_many(max_items=batch, timeout=60) if batch > 1 else [q.get(timeout=60)]
        for index, item in enumerate(got):
            if item is None:
                # a batch may hold several sentinels (they come last): hand the others back
                q.put_many(got[index + 1 :])
                out.put(seen)
                return
            seen.append((item[0], item[1], len(item[2])))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    producers=st.lists(st.lists(_SIZES, max_size=40), min_size=1, max_size=3),
    consumer_batches=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    batch_every=st.integers(0, 5),
    maxsize=st.sampled_from([0, 3, 50]),
)
def test_every_item_exactly_once(
    producers: list[list[int]], consumer_batches: list[int], batch_every: int, maxsize: int
) -> None:
    if maxsize:
        batch_every = min(batch_every, maxsize)
    ctx = procly.get_context("fork")
    q, out = ctx.Queue(maxsize), ctx.Queue()
    cons = [ctx.Process(target=_consumer, args=(q, out, b)) for b in consumer_batches]
    prods = [ctx.Process(target=_producer, args=(q, k, s, batch_every)) for k, s in enumerate(producers)]
    for p in cons + prods:
        p.start()
    for p in prods:
        p.join(60)
        assert p.exitcode == 0
    for _ in cons:
        q.put(None, timeout=60)
    seen_by = [out.get(timeout=60) for _ in cons]
    for p in cons:
        p.join(60)
        assert p.exitcode == 0
    everything = sorted(x for seen in seen_by for x in seen)
    expected = sorted((k, seq, size) for k, sizes in enumerate(producers) for seq, size in enumerate(sizes))
    assert everything == expected
    for seen in seen_by:  # per consumer, each producer's items in the order they were put
        for k in range(len(producers)):
            seqs = [seq for pid, seq, _ in seen if pid == k]
            assert seqs == sorted(seqs)
    assert q.empty()
