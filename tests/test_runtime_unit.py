"""Runtime pieces that need no bpf(): layout checks, bitfields, value codecs, libbpf glue."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import pytest
from ebpf_gen.runtime import (
    Bitfield,
    LibbpfError,
    MapKind,
    MissingCapabilityError,
    ObjectFile,
    ObjectFileError,
    ObjectsBase,
    ObjectSpec,
    check_layout,
    libbpf,
)
from ebpf_gen.runtime.codec import Codec

from .uapi import header_enum


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint32)]


class Flags(ctypes.Structure):
    _fields_ = [("_bitfield_0", ctypes.c_uint8 * 2)]
    low = Bitfield("_bitfield_0", bit=0, bits=3, signed=False)
    mid = Bitfield("_bitfield_0", bit=3, bits=6, signed=True)
    be = Bitfield("_bitfield_0", bit=0, bits=4, signed=False, byteorder="big")


def test_check_layout_names_member_and_offsets() -> None:
    check_layout(Pair, size=8, offsets={"a": 0, "b": 4})
    with pytest.raises(ImportError, match=r"Pair: member 'b' is at offset 4 in ctypes, BTF says 1"):
        check_layout(Pair, size=8, offsets={"a": 0, "b": 1})
    with pytest.raises(ImportError, match="ctypes size is 8 bytes, BTF says 5"):
        check_layout(Pair, size=5, offsets={})
    with pytest.raises(ImportError, match="member 'c'"):
        check_layout(Pair, size=8, offsets={"c": 0})


def test_bitfields() -> None:
    f = Flags()
    f.low = 5
    f.mid = -20
    assert (f.low, f.mid) == (5, -20)
    # LE numbering: low = bits 0-2 of byte 0, mid = bits 3-8 spanning both bytes
    assert int.from_bytes(bytes(f._bitfield_0), "little") == 5 | ((-20 & 0x3F) << 3)
    f.be = 0xA  # big-endian numbering: bit 0 is the top bit of the first byte
    assert bytes(f._bitfield_0)[0] >> 4 == 0xA
    with pytest.raises(ValueError, match=r"Flags.low: 8 out of range \[0, 7\]"):
        f.low = 8
    with pytest.raises(TypeError):
        f.mid = "1"  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("ctype", "value", "back"),
    [
        (ctypes.c_int16, -3, -3),
        (ctypes.c_uint64, 2**64 - 1, 2**64 - 1),
        (ctypes.c_char * 6, b"ab", b"ab"),
        (ctypes.c_bool, True, True),
        (None, b"\x01\x02\x03", b"\x01\x02\x03"),
    ],
)
def test_codec_round_trip(ctype: type | None, value: object, back: object) -> None:
    codec = Codec(ctype, 3 if ctype is None else ctypes.sizeof(ctype), "thing")
    buf = codec.buffer()
    codec.encode(value, buf)
    assert codec.decode(buf) == back


def test_codec_struct_is_copied_out() -> None:
    codec = Codec(Pair, 8, "value")
    buf = codec.buffer()
    codec.encode(Pair(1, 2), buf)
    out = codec.decode(buf)
    buf.a = 9
    assert (out.a, out.b) == (1, 2)


def test_codec_errors() -> None:
    codec = Codec(ctypes.c_uint8, 1, "map 'm': key")
    with pytest.raises(TypeError, match=r"map 'm': key must be int \(c_ubyte\), got str"):
        codec.encode("1", codec.buffer())
    with pytest.raises(ValueError, match=r"256 out of range .* \[0, 255\]"):
        codec.encode(256, codec.buffer())
    with pytest.raises(TypeError, match="must be Pair"):
        Codec(Pair, 8, "v").encode(b"\0" * 8, Pair())
    with pytest.raises(TypeError, match="the kernel object has 4"):
        Codec(Pair, 4, "v")


def test_map_kind_matches_uapi_header() -> None:
    # by value, as the compiler reads the header: a renamed constant keeps its old name as
    # an alias (CGROUP_STORAGE = CGROUP_STORAGE_DEPRECATED), and a kind newer than the
    # runtime's table is reported by value
    header = header_enum("linux/bpf.h", "bpf_map_type", "BPF_MAP_TYPE_")
    for kind in MapKind:  # an older header may lack the newest kinds
        if kind.value in header:
            assert kind.name in header[kind.value], (kind, sorted(header[kind.value]))
    missing = {v: sorted(n) for v, n in header.items() if v not in MapKind._value2member_map_}
    assert not missing, f"map kinds in linux/bpf.h that MapKind lacks: {missing}"


def test_errors() -> None:
    e = libbpf.error(-2, "lookup on map 'm'")
    assert isinstance(e, LibbpfError) and isinstance(e, OSError) and e.errno == 2
    assert str(e) == "lookup on map 'm': No such file or directory (ENOENT)"
    p = libbpf.error(-1, "load")
    assert isinstance(p, MissingCapabilityError) and isinstance(p, PermissionError)
    assert "CAP_BPF" in str(p)


def test_open_opts_layout_matches_libbpf_1_1() -> None:
    # struct bpf_object_open_opts: sz first, kernel_log_level the last field (libbpf.h)
    assert libbpf.BpfObjectOpenOpts.kernel_log_buf.offset == 56
    assert ctypes.sizeof(libbpf.BpfObjectOpenOpts) == 80


def test_libbpf_print_goes_to_logging(caplog: pytest.LogCaptureFixture) -> None:
    lib = libbpf.lib()
    junk = b"\x7fELF" + b"\0" * 60
    opts = libbpf.BpfObjectOpenOpts(sz=ctypes.sizeof(libbpf.BpfObjectOpenOpts))
    with caplog.at_level(logging.DEBUG, logger="ebpf_gen.libbpf"):
        ptr = lib.bpf_object__open_mem(junk, len(junk), ctypes.byref(opts))
    assert not ptr
    messages = [r.getMessage() for r in caplog.records if r.name == "ebpf_gen.libbpf"]
    # formatted through vsnprintf: no stray % directives left
    assert any(m.startswith("libbpf: ") for m in messages), messages
    assert not any("%s" in m or "%d" in m for m in messages)


def test_object_spec_errors(tmp_path: Path) -> None:
    (tmp_path / "x_bpfel.o").write_bytes(b"not an object")
    spec: ObjectSpec[ObjectsBase] = ObjectSpec(
        name="x", package=None, directory=tmp_path, objects=ObjectsBase,
        files={"little": ObjectFile("x_bpfel.o", sha256="0" * 64),
               "big": ObjectFile("x_bpfeb.o", sha256="0" * 64)},
    )
    with pytest.raises(ObjectFileError, match=r"x_bpfel.o has sha256 .* expects 0000"):
        spec.load()
    only_big: ObjectSpec[ObjectsBase] = ObjectSpec(
        name="x", package=None, directory=tmp_path, objects=ObjectsBase,
        files={"big": ObjectFile("x_bpfeb.o", sha256="0" * 64)},
    )
    with pytest.raises(ObjectFileError, match="no object built for this little-endian"):
        only_big.load()
