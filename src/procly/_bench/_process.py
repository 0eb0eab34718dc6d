"""Benchmark section "process": start + join of a no-op process, per start method.

Each runner call starts and joins *n* processes one after the other and returns the mean
seconds per process.  The first call of each contender also starts (untimed) one process,
so the forkserver start-up and first imports are not billed to one sample.

Byte-code: a spawned child imports procly from scratch.  The standard library's modules
are byte-compiled when Python is installed, and pip byte-compiles procly when it installs
a wheel; an editable checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (as on the
development machines) would instead re-compile procly's sources in every child and
measure the compiler.  :func:`cases` therefore byte-compiles the procly package first,
exactly as an installation does (nothing else changes; the stdlib is untouched).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ._harness import Case

__all__ = ("cases",)

_TARGETS = {"fork": 1.1, "forkserver": 1.0, "spawn": 1.0}


def _procly_context(method: str) -> Any:
    import procly

    return procly.get_context(method)


def _stdlib_context(method: str) -> Any:
    import multiprocessing  # only the benchmark compares against the standard library

    return multiprocessing.get_context(method)


class _Runner:
    """Start+join *n* no-op processes of one contender; warm up on first use."""

    def __init__(self, get_context: Callable[[str], Any], method: str, n: int) -> None:
        self._get_context = get_context
        self._method = method
        self._n = n
        self._warm = False

    def _one(self, ctx: Any) -> None:
        # A builtin as the no-op target: unpickling it imports nothing, so the child's time
        # is the start method's own (a target in this module would make every child import
        # the benchmark harness, statistics and all).
        process = ctx.Process(target=os.getpid)
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"no-op process exited with {process.exitcode}")

    def __call__(self) -> float:
        ctx = self._get_context(self._method)
        if not self._warm:
            self._one(ctx)
            self._warm = True
        started = time.perf_counter()
        for _ in range(self._n):
            self._one(ctx)
        return (time.perf_counter() - started) / self._n


def _byte_compile_procly() -> None:
    import compileall

    import procly

    package_dir = os.path.dirname(procly.__file__)
    if os.access(package_dir, os.W_OK):
        compileall.compile_dir(package_dir, quiet=1)


def cases(quick: bool) -> list[Case]:
    _byte_compile_procly()
    counts = {
        "fork": 10 if quick else 40,
        "forkserver": 5 if quick else 20,
        "spawn": 3 if quick else 8,
    }
    result = []
    for method in ("fork", "forkserver", "spawn"):
        n = counts[method]
        result.append(
            Case(
                name=f"start+join no-op Process, {method}",
                metric="time",
                unit="s",
                target=_TARGETS[method],
                runners={
                    "procly": _Runner(_procly_context, method, n),
                    "stdlib": _Runner(_stdlib_context, method, n),
                },
            )
        )
    return result
