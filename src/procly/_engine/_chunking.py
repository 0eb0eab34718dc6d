"""Chunk-size policy: how many items of a lazy map go into one task.

A task costs the parent roughly 10-20 us whatever it does (pickling, bookkeeping, a
result message), so one item per task caps a pool at tens of thousands of items per
second, while huge chunks starve workers and delay the first results.  When the caller
gives no ``chunksize``, :class:`ChunkSizer` starts at one item per chunk and grows
(at most doubling per chunk) toward chunks that take about :data:`TARGET_CHUNK_S` to run,
using the per-item durations the workers report.  Slow items therefore stay one per
chunk; trivial ones end up thousands per chunk.
"""

from __future__ import annotations

__all__ = ("TARGET_CHUNK_S", "ChunkSizer", "default_map_chunksize")

#: Seconds of work one chunk should hold once the item cost is known.
TARGET_CHUNK_S = 0.01
MAX_CHUNK = 1 << 16


def default_map_chunksize(n_items: int, processes: int) -> int:
    """The standard library's ``Pool.map`` rule: about four chunks per worker."""
    chunksize, extra = divmod(n_items, processes * 4)
    return chunksize + 1 if extra else max(chunksize, 1)


class ChunkSizer:
    """Adaptive chunk size from observed per-item durations (thread-safe enough: one
    writer, the dispatcher thread, and one reader, the feeder; a stale read is harmless)."""

    def __init__(self, target_s: float = TARGET_CHUNK_S, max_size: int = MAX_CHUNK) -> None:
        if target_s <= 0 or max_size < 1:
            raise ValueError("target_s must be positive and max_size at least 1")
        self._target = target_s
        self._max = max_size
        self._per_item: float | None = None
        self._size = 1

    @property
    def per_item(self) -> float | None:
        """Estimated seconds per item (EWMA), ``None`` before the first observation."""
        return self._per_item

    def observe(self, items: int, seconds: float) -> None:
        """Record that a chunk of *items* took *seconds* of work in a worker."""
        if items <= 0 or seconds < 0:
            return
        sample = seconds / items
        old = self._per_item
        self._per_item = sample if old is None else 0.7 * old + 0.3 * sample

    def next_size(self) -> int:
        """The size of the next chunk."""
        per_item = self._per_item
        if per_item is None:
            return self._size
        ideal = int(self._target / max(per_item, 1e-8))
        size = max(1, min(ideal, self._max, self._size * 2))
        self._size = size
        return size
