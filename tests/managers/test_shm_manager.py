"""SharedMemoryManager: blocks created through it are freed when it shuts down."""

from __future__ import annotations

import os
from typing import Any

import pytest

import procly
from procly import ProcessError
from procly.managers import RemoteError, SharedMemoryManager
from procly.shared_memory import ShareableList, SharedMemory


def _write(name: str, items: Any) -> None:
    segment = SharedMemory(name)
    assert segment.buf is not None
    segment.buf[0] = 42
    segment.close()
    items[0] = "child"


def test_blocks_are_shared_and_freed_at_shutdown(start_method: str) -> None:
    ctx = procly.get_context(start_method)
    with SharedMemoryManager(ctx=ctx) as smm:
        segment = smm.SharedMemory(64)
        items = smm.ShareableList(["parent", 1, 2.5])
        names = {segment.name, items.shm.name}
        assert set(smm._request("list_segments")) == names
        p = ctx.Process(target=_write, args=(segment.name, items))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert segment.buf is not None and segment.buf[0] == 42
        assert items[0] == "child"
        segment.close()
        items.shm.close()
    for name in names:
        assert not os.path.exists(f"/dev/shm/{name}")
        with pytest.raises(FileNotFoundError):
            SharedMemory(name)


def test_release_segment_and_errors() -> None:
    smm = SharedMemoryManager(ctx=procly.get_context("fork"))
    with pytest.raises(ProcessError):
        smm.SharedMemory(10)
    smm.start()
    try:
        segment = smm.SharedMemory(10)
        smm._request("release_segment", segment.name)
        assert smm._request("list_segments") == []
        segment.close()
        with pytest.raises(ValueError):
            smm.SharedMemory(0)
        with pytest.raises(RemoteError, match="not in list"):  # as the stdlib reports it
            smm._request("release_segment", "no-such-segment")
        assert isinstance(smm.ShareableList(range(3)), ShareableList)
    finally:
        smm.shutdown()
