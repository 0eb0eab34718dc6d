"""procly's pickler: out-of-band buffers, functions by value, the reducer registry, clear errors."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from procly._errors import SerializationError
from procly._serial import _pickler
from procly._serial._pickler import OOB_THRESHOLD, dumps, dumps_oob, loads


def test_plain_data_round_trips() -> None:
    for obj in (None, 1, 2.5, "s", b"b", (1, "a"), [1, [2]], {"k": {1, 2}}, 10**40):
        assert loads(dumps(obj)) == obj
        stream, buffers = dumps_oob(obj)
        assert buffers == [] and loads(stream) == obj


def test_large_numpy_array_travels_out_of_band_without_copy() -> None:
    array = np.arange(1_000_000, dtype=np.float64)
    stream, buffers = dumps_oob(array)
    assert len(stream) < 1000, "the array data is not in the pickle stream"
    (buf,) = buffers
    assert buf.nbytes == array.nbytes
    assert np.shares_memory(np.frombuffer(buf, dtype=np.float64), array), "a view, not a copy"
    received = bytearray(buf)  # what a receiver's buffer would hold
    back = loads(stream, [received])
    assert np.array_equal(back, array)
    assert np.shares_memory(back, np.frombuffer(received, dtype=np.float64)), "no copy on load"


def test_small_buffers_stay_in_band() -> None:
    array = np.arange(10)
    stream, buffers = dumps_oob(array)
    assert buffers == [] and np.array_equal(loads(stream), array)


def test_memoryview_and_picklebuffer_go_out_of_band() -> None:
    data = bytearray(range(256)) * (OOB_THRESHOLD // 256 + 1)
    for obj in (memoryview(data), pickle.PickleBuffer(data)):
        stream, buffers = dumps_oob(obj)
        assert len(buffers) == 1 and len(stream) < 200
        assert bytes(loads(stream, [bytearray(buffers[0])])) == bytes(data)


def test_non_contiguous_buffer_stays_in_band() -> None:
    array = np.arange(200_000)[::2]
    stream, buffers = dumps_oob(array)
    assert buffers == [] and np.array_equal(loads(stream), array)


def test_lambda_and_closure_go_by_value() -> None:
    offset = 40

    def closure(x: int) -> int:
        return x + offset

    assert loads(dumps(lambda x: x * 3))(2) == 6
    assert loads(dumps(closure))(2) == 42
    assert loads(dumps([closure, closure]))[1](1) == 41


def module_level(x: int) -> int:
    return x - 1


def test_importable_function_goes_by_reference() -> None:
    stream = dumps(module_level)
    assert b"module_level" in stream and b"cloudpickle" not in stream
    assert loads(stream) is module_level


def test_main_function_of_python_c_goes_by_value() -> None:
    """``python -c`` has no source file to re-import: its functions must travel by value."""
    code = (
        "import sys\n"
        "from procly._serial._pickler import dumps\n"
        "def triple(x):\n"
        "    return 3 * x\n"
        "sys.stdout.buffer.write(dumps(triple))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=60)
    assert loads(out.stdout)(5) == 15


class Unpicklable:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def test_unpicklable_object_error_names_culprit_type_and_path() -> None:
    with pytest.raises(SerializationError) as info:
        dumps({"outer": [1, Unpicklable()]})
    text = str(info.value)
    assert "_thread.lock" in text
    assert "['outer'][1].lock" in text
    assert isinstance(info.value, pickle.PicklingError)
    with pytest.raises(SerializationError, match=r"_thread\.lock"):
        dumps_oob((np.arange(100_000), threading.Lock()))


def test_generator_is_refused_clearly() -> None:
    with pytest.raises(SerializationError, match="generator"):
        dumps(x for x in range(3))


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


def _rebuild_point(x: int) -> Point:
    p = Point(x)
    p.x = x * 100  # a visible trace that the registered reducer ran
    return p


def test_registered_reducer_is_used() -> None:
    _pickler.register(Point, lambda p: (_rebuild_point, (p.x,)))
    try:
        assert loads(dumps(Point(2))).x == 200
    finally:
        del _pickler._REGISTRY.by_type[Point]
    assert loads(dumps(Point(2))).x == 2


def test_forking_pickler_public_identity() -> None:
    from procly.reduction import ForkingPickler

    assert ForkingPickler.__module__ == "procly.reduction"
    assert ForkingPickler.__qualname__ == "ForkingPickler"
    assert pickle.loads(ForkingPickler.dumps([1, 2])) == [1, 2]
    assert ForkingPickler.loads(ForkingPickler.dumps("x")) == "x"


def test_reduction_dump_writes_a_loadable_pickle() -> None:
    import io

    from procly import reduction

    buf = io.BytesIO()
    reduction.dump(lambda: "by value", buf)
    fn: Any = pickle.loads(buf.getvalue())
    assert fn() == "by value"
