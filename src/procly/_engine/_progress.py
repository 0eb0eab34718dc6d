"""``progress=``: a live tqdm bar over a map's items (tqdm is an optional dependency).

::

    caller (map/imap call)            dispatcher thread             caller / GC
    progress_bar(spec, total) ──> bar.update(items of each chunk) ──> bar.close()
                                  (the result sink, as chunks end)   (end, failure, close)

* **The caller** turns ``progress=`` into a :class:`ProgressBar` (or ``None``) when the map
  starts, so the bar's clock (rate, ETA) starts with the map.
* **The dispatcher thread** counts *items*, not chunks: each finished chunk advances the
  bar by its size (failed chunks too: their items are done, if badly).
* **Whoever ends the map** closes the bar: the result sink when the last chunk arrives or
  a chunk fails (``map``), the lazy map when it is exhausted or closed (``imap`` and
  ``Executor.map``, also when the caller stops iterating and drops the iterator).

Why this lives in the engine and not in an observer layer: Pool and Executor (the layer
above) create the bars, and they may not import the observer layer; the module imports
tqdm only when a bar is asked for, so ``progress=False`` costs nothing and never imports
it.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ("ProgressBar", "ProgressSpec", "check_progress", "progress_bar", "total_of")

#: What ``progress=`` accepts: a bool, or keyword arguments for ``tqdm`` (``desc``, ...).
ProgressSpec = bool | Mapping[str, Any] | None

_INSTALL = "progress=True needs tqdm: pip install procly[progress] (or pip install tqdm)"


def check_progress(spec: ProgressSpec) -> ProgressSpec:
    """Validate ``progress=``: :class:`TypeError` unless a bool, ``None`` or a mapping with
    string keys (tqdm's keyword arguments)."""
    if spec is None or isinstance(spec, bool):
        return spec
    if isinstance(spec, Mapping):
        if not all(isinstance(k, str) for k in spec):
            raise TypeError("progress= keyword arguments for tqdm must have str keys")
        return spec
    raise TypeError(
        f"progress must be True, False or a dict of tqdm keyword arguments, "
        f"not {type(spec).__name__}"
    )


def total_of(*iterables: Any) -> int | None:
    """The number of items a map over *iterables* will have, if their lengths are known
    (``zip`` stops at the shortest); ``None`` for generators."""
    lengths = []
    for it in iterables:
        try:
            lengths.append(len(it))
        except TypeError:
            return None
    return min(lengths) if lengths else None


class ProgressBar:
    """A tqdm bar updated from the dispatcher thread and closed exactly once from
    whichever thread ends the map (a lock orders the two)."""

    __slots__ = ("_bar", "_lock")

    def __init__(self, bar: Any) -> None:
        self._bar: Any = bar
        self._lock = threading.Lock()

    def update(self, items: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.update(items)

    def close(self) -> None:
        """Close the bar (idempotent)."""
        with self._lock:
            bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()

    @property
    def closed(self) -> bool:
        return self._bar is None


def progress_bar(spec: ProgressSpec, total: int | None) -> ProgressBar | None:
    """A bar for a map of *total* items (``None``: unknown), or ``None`` for no bar.

    Raises :class:`ImportError` naming ``pip install procly[progress]`` when tqdm is
    missing, and :class:`TypeError` for a bad *spec*.
    """
    spec = check_progress(spec)
    if spec is None or spec is False:
        return None
    try:
        # (by name: tqdm ships no type information, and this is its only use)
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError as exc:
        raise ImportError(_INSTALL) from exc
    kwargs: dict[str, Any] = {"total": total, "unit": "item"}
    if isinstance(spec, Mapping):
        kwargs.update(spec)
    return ProgressBar(tqdm(**kwargs))
