"""The on-disk BTF format (include/uapi/linux/btf.h): header, type records, string table.

Everything after the header is a stream of little- or big-endian u32 words: the common
``btf_type`` header is three words and every per-kind trailer is a whole number of words.
The decoder therefore reads the type section as one list of u32 (built in C by ``array``)
instead of unpacking record by record; this module holds the header and how many words
each kind's trailer takes.
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
_HEADER = {"little": struct.Struct("<HBBIIIII"), "big": struct.Struct(">HBBIIIII")}
HEADER_SIZE = _HEADER["little"].size  # 24

# Words after the 3-word struct btf_type, per kind: a fixed trailer, or one entry per vlen.
_FIXED = {
    Kind.INT: 1,  # encoding | offset | bits
    Kind.ARRAY: 3,  # type, index_type, nelems
    Kind.VAR: 1,  # linkage
    Kind.DECL_TAG: 1,  # component_idx
}
_PER_VLEN = {
    Kind.STRUCT: 3,  # name_off, type, offset
    Kind.UNION: 3,
    Kind.ENUM: 2,  # name_off, val
    Kind.ENUM64: 3,  # name_off, val_lo32, val_hi32
    Kind.FUNC_PROTO: 2,  # name_off, type
    Kind.DATASEC: 3,  # type, offset, size
}
# The same, indexed by kind number.
FIXED_WORDS: tuple[int, ...] = tuple(_FIXED.get(k, 0) for k in Kind)
VLEN_WORDS: tuple[int, ...] = tuple(_PER_VLEN.get(k, 0) for k in Kind)
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
    if len(data) < HEADER_SIZE:
        raise BTFError(
            f"offset {len(data)}: truncated header: {len(data)} bytes, need {HEADER_SIZE}",
            where=where,
        )
    _, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER[order].unpack_from(
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


def u32_array(data: bytes, start: int, length: int, byteorder: str) -> array[int]:
    """The bytes ``data[start:start+length]`` as u32 words in host order (a trailing
    partial word is dropped)."""
    words = array("I")
    if words.itemsize != 4:  # pragma: no cover - every CPython platform we target has 4
        words = array("L")
    end = start + length - length % 4
    words.frombytes(bytes(data[start:end]))
    if byteorder != sys.byteorder:
        words.byteswap()
    return words


def u32_words(data: bytes, start: int, length: int, byteorder: str) -> list[int]:
    """The bytes ``data[start:start+length]`` as u32 words (a trailing partial word is dropped)."""
    return u32_array(data, start, length, byteorder).tolist()
