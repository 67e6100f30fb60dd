"""event_dtype: numpy structured dtypes laid out exactly as the ctypes event types (no
kernel needed)."""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import pytest
from ebpf_gen.runtime import Bitfield, events

np = pytest.importorskip("numpy")


class Inner(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint64)]


class Padded(ctypes.Structure):
    # pid at 0, 4 bytes of padding, inner at 8 (16 bytes), comm at 24, 2 bytes tail padding
    _fields_ = [
        ("pid", ctypes.c_uint32),
        ("inner", Inner),
        ("comm", ctypes.c_char * 6),
        ("ports", ctypes.c_uint16 * 3),
    ]


def test_dtype_keeps_offsets_and_padding() -> None:
    dt = events.event_dtype(Padded)
    assert dt.itemsize == ctypes.sizeof(Padded) == 40
    assert {name: dt.fields[name][1] for name in dt.names} == {
        name: getattr(Padded, name).offset for name, *_ in Padded._fields_
    }
    assert dt["comm"] == np.dtype("S6")  # bytes, as the event objects show char arrays
    assert dt["ports"].shape == (3,)
    assert dt["inner"].fields["b"][1] == 8


def test_dtype_reads_the_same_values_as_the_struct() -> None:
    ev = Padded(pid=7, inner=Inner(a=1, b=2**40), comm=b"bash", ports=(1, 2, 3))
    arr = np.frombuffer(bytes(ev), events.event_dtype(Padded))
    assert (int(arr["pid"][0]), int(arr["inner"]["b"][0]), bytes(arr["comm"][0])) == (
        7, 2**40, b"bash"
    )
    assert arr["ports"][0].tolist() == [1, 2, 3]


def test_bitfields_are_refused_naming_the_field() -> None:
    class Flags(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint32), ("kind", ctypes.c_uint32, 3)]

    with pytest.raises(TypeError, match=r"Flags\.kind is a bitfield: numpy has no dtype"):
        events.event_dtype(Flags)


def test_generated_bitfields_are_refused_naming_the_field() -> None:
    class Packet(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("_bitfield_2", ctypes.c_uint8 * 2)]
        proto = Bitfield("_bitfield_2", bit=0, bits=4, signed=False)

    class Wrapper(ctypes.Structure):
        _fields_ = [("pid", ctypes.c_uint32), ("pkt", Packet)]

    with pytest.raises(TypeError, match=r"Wrapper\.pkt\.proto is a bitfield \(bits of _bitf"):
        events.event_dtype(Wrapper)


class Event(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("seq", ctypes.c_uint32),
                ("value", ctypes.c_uint64), ("tag", ctypes.c_char * 8)]


class _FakePerfRing:
    """The attributes of a _PerfRing that parsing reads, over plain memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data = (ctypes.c_char * size)()
        self.words = memoryview(self.data).cast("B").cast("Q")
        self.np_words = None
        self.tail = 0


def _write(ring: _FakePerfRing, pos: int, record: bytes) -> None:
    """Write ``record`` at stream position ``pos``, wrapping around the ring's end."""
    view = memoryview(ring.data).cast("B")
    for i, b in enumerate(record):
        view[(pos + i) % ring.size] = b


def _sample(seq: int) -> bytes:  # header (type 9, size 40), u32 raw size 28, event, pad
    ev = Event(pid=7, seq=seq, value=seq * 3, tag=b"t%d" % (seq % 10))
    return struct.pack("<IHHI", 9, 0, 40, 28) + bytes(ev) + b"\0" * 4


def _parse(ring: _FakePerfRing, head: int, sink: Any) -> tuple[Any, int]:
    reader = object.__new__(events._PerfReader)
    reader.short = reader._lost = 0
    assert events._PerfReader._parse(reader, ring, head, sink) == head  # type: ignore[arg-type]
    return sink.finish(), reader._lost


@pytest.mark.parametrize("lost_at", [None, 5])
def test_perf_arrays_equal_objects_at_every_wrap_offset(lost_at: int | None) -> None:
    """Records at a fixed stride from every 8-byte offset before a ring's end, so that the
    end falls in every place of a record (header, raw size, event, padding): the array
    (vectorized when every header is one sample's) equals the objects field by field.
    A LOST record in the batch sends the arrays down the general path, counted."""
    size, count = 4096, 30
    for start in range(size - count * 40 - 8, size + 8, 8):
        ring = _FakePerfRing(size)
        pos = ring.tail = 3 * size + start
        for seq in range(count):
            if seq == lost_at:  # struct { header; u64 id; u64 lost; }: 24 bytes
                _write(ring, pos, struct.pack("<IHHQQ", 2, 0, 24, 1, 11))
                pos += 24
            _write(ring, pos, _sample(seq))
            pos += 40
        vectorized = events._Arrays("events", Event)
        assert vectorized.perf_region(ring, ring.tail, pos) == (lost_at is None), start
        vectorized.finish()
        arr, lost = _parse(ring, pos, events._Arrays("events", Event))
        objs, lost_objs = _parse(ring, pos, events._Objects(Event))
        want = [(7, s, s * 3, b"t%d" % (s % 10)) for s in range(count)]
        assert [(e.pid, e.seq, e.value, e.tag) for e in objs] == want, start
        assert [(int(e["pid"]), int(e["seq"]), int(e["value"]), bytes(e["tag"]))
                for e in arr] == want, start
        assert lost == lost_objs == (11 if lost_at is not None else 0)
