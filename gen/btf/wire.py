"""The on-disk BTF format (include/uapi/linux/btf.h): header, type records, string table.

Everything after the header is a stream of little- or big-endian u32 words: the common
``btf_type`` header is three words and every per-kind trailer is a whole number of words.
The decoder therefore reads the type section as one list of u32 (built in C by ``array``)
instead of unpacking record by record; the ``struct`` formats here describe the same layout
for the header and for anyone who wants to read a single record.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass

from ..errors import BTFError
from .types import Kind

MAGIC = 0xEB9F
VERSION = 1

# The magic as it appears in the first two bytes, per byte order.
MAGIC_LE = b"\x9f\xeb"
MAGIC_BE = b"\xeb\x9f"

# struct btf_header: magic u16, version u8, flags u8, hdr_len u32,
# type_off u32, type_len u32, str_off u32, str_len u32.
HEADER_FORMAT = "HBBIIIII"
HEADER_SIZE = struct.calcsize("<" + HEADER_FORMAT)  # 24

# struct btf_type: name_off u32, info u32, size_or_type u32.
TYPE_FORMAT = "III"
TYPE_SIZE = 12

# info bits
VLEN_MASK = 0xFFFF
KIND_SHIFT = 24
KIND_MASK = 0x1F
KFLAG_SHIFT = 31

# BTF_INT_* fields of the u32 after an INT's header.
INT_ENCODING_SHIFT = 24
INT_ENCODING_MASK = 0x0F
INT_OFFSET_SHIFT = 16
INT_OFFSET_MASK = 0xFF
INT_BITS_MASK = 0xFF

# BTF_MEMBER_* when the struct/union's kind_flag is set.
MEMBER_BITFIELD_SHIFT = 24
MEMBER_OFFSET_MASK = 0xFFFFFF

# Trailer formats, per kind. "vlen" trailers repeat vlen times.
TRAILER_FORMAT: dict[Kind, str] = {
    Kind.INT: "I",  # encoding | offset | bits
    Kind.ARRAY: "III",  # type, index_type, nelems
    Kind.STRUCT: "III",  # name_off, type, offset  (per member)
    Kind.UNION: "III",
    Kind.ENUM: "Ii",  # name_off, val  (per value; sign per kind_flag)
    Kind.ENUM64: "III",  # name_off, val_lo32, val_hi32  (per value)
    Kind.FUNC_PROTO: "II",  # name_off, type  (per param)
    Kind.VAR: "I",  # linkage
    Kind.DATASEC: "III",  # type, offset, size  (per variable)
    Kind.DECL_TAG: "i",  # component_idx
}
# Kinds whose trailer repeats once per vlen; the others have a fixed trailer (or none).
VLEN_KINDS = frozenset(
    {Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FUNC_PROTO, Kind.DATASEC}
)

# Trailer size in u32 words: fixed part and per-vlen part, indexed by kind number.
FIXED_WORDS: tuple[int, ...] = tuple(
    0 if k in VLEN_KINDS or k not in TRAILER_FORMAT else struct.calcsize(TRAILER_FORMAT[k]) // 4
    for k in Kind
)
VLEN_WORDS: tuple[int, ...] = tuple(
    struct.calcsize(TRAILER_FORMAT[k]) // 4 if k in VLEN_KINDS else 0 for k in Kind
)
MAX_KIND = max(Kind)


@dataclass(frozen=True, slots=True)
class Header:
    byteorder: str  # "little" or "big"
    version: int
    flags: int
    hdr_len: int
    type_off: int  # relative to the end of the header
    type_len: int
    str_off: int  # relative to the end of the header
    str_len: int


@dataclass(frozen=True, slots=True)
class Formats:
    """struct formats for one byte order, compiled once."""

    prefix: str
    header: struct.Struct
    type: struct.Struct
    trailers: dict[Kind, struct.Struct]


def _formats(prefix: str) -> Formats:
    return Formats(
        prefix=prefix,
        header=struct.Struct(prefix + HEADER_FORMAT),
        type=struct.Struct(prefix + TYPE_FORMAT),
        trailers={k: struct.Struct(prefix + f) for k, f in TRAILER_FORMAT.items()},
    )


FORMATS: dict[str, Formats] = {"little": _formats("<"), "big": _formats(">")}


def byteorder_of(data: bytes, where: str = ".BTF") -> str:
    """Decide the byte order once, from the magic."""
    head = bytes(data[:2])
    if head == MAGIC_LE:
        return "little"
    if head == MAGIC_BE:
        return "big"
    if len(head) < 2:
        raise BTFError(f"offset 0: truncated: {len(data)} bytes, no BTF magic", where=where)
    raise BTFError(
        f"offset 0: bad magic 0x{head.hex()} (want 9feb little-endian or eb9f big-endian)",
        where=where,
    )


def read_header(data: bytes, where: str = ".BTF") -> Header:
    """Parse and bounds-check the header; every section length is checked against ``data``."""
    order = byteorder_of(data, where)
    fmt = FORMATS[order]
    if len(data) < HEADER_SIZE:
        raise BTFError(
            f"offset {len(data)}: truncated header: {len(data)} bytes, need {HEADER_SIZE}",
            where=where,
        )
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = fmt.header.unpack_from(
        data, 0
    )
    if version != VERSION:
        raise BTFError(f"offset 2: unsupported BTF version {version} (want 1)", where=where)
    if hdr_len < HEADER_SIZE:
        raise BTFError(f"offset 4: hdr_len {hdr_len} smaller than {HEADER_SIZE}", where=where)
    if hdr_len > len(data):
        raise BTFError(
            f"offset 4: hdr_len {hdr_len} past the end of {len(data)} bytes", where=where
        )
    for name, field_at, off, length in (
        ("type", 8, type_off, type_len),
        ("string", 16, str_off, str_len),
    ):
        end = hdr_len + off + length
        if end > len(data):
            raise BTFError(
                f"offset {field_at}: {name} section [{hdr_len + off}, {end}) runs past the "
                f"end of {len(data)} bytes",
                where=where,
            )
    if type_off % 4:
        raise BTFError(f"offset 8: type_off {type_off} is not 4-byte aligned", where=where)
    return Header(order, version, flags, hdr_len, type_off, type_len, str_off, str_len)


def u32_words(data: bytes, start: int, length: int, byteorder: str) -> list[int]:
    """The bytes ``data[start:start+length]`` as u32 words (a trailing partial word is dropped)."""
    words = array("I")
    if words.itemsize != 4:  # pragma: no cover - every CPython platform we target has 4
        words = array("L")
    end = start + length - length % 4
    words.frombytes(bytes(data[start:end]))
    if byteorder != sys.byteorder:
        words.byteswap()
    return words.tolist()
