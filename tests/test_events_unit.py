"""event_dtype: numpy structured dtypes laid out exactly as the ctypes event types (no
kernel needed)."""

from __future__ import annotations

import ctypes

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
