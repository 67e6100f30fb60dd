"""Minimal inputs for every failure class the fuzzing of issue 8 found, built from bytes.

Each case is a BPF ELF object holding one hand-built .BTF section (and, where the class
needs one, a ``.maps`` map), small enough to read in a hex dump. ``tests/test_hardening.py``
checks each one in-process and through the CLI; the fuzz target replays them as seeds.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from ebpf_gen.btf.types import Kind

from ..test_btf import BtfBuilder

EM_BPF = 247


def bpf_elf(btf: bytes, order: str = "<") -> bytes:
    """An ELF64 EM_BPF relocatable holding ``.BTF`` and the section name table only."""
    shstrtab = b"\0.BTF\0.shstrtab\0"
    body = btf + b"\0" * (-len(btf) % 8)
    btf_off = 64
    str_off = btf_off + len(body)
    shoff = str_off + len(shstrtab) + (-(str_off + len(shstrtab)) % 8)
    ident = b"\x7fELF" + bytes([2, 1 if order == "<" else 2, 1]) + b"\0" * 9
    header = ident + struct.pack(order + "HHIQQQIHHHHHH", 1, EM_BPF, 1, 0, 0, shoff, 0, 64,
                                 0, 0, 64, 3, 2)
    sh = struct.Struct(order + "IIQQQQIIQQ")
    sections = (sh.pack(*(0,) * 10)
                + sh.pack(1, 1, 0, 0, btf_off, len(btf), 0, 0, 4, 0)
                + sh.pack(6, 3, 0, 0, str_off, len(shstrtab), 0, 0, 1, 0))
    data = header + body + shstrtab
    return data + b"\0" * (shoff - len(data)) + sections


def _int(b: BtfBuilder) -> int:
    return b.type("int", Kind.INT, su=4, trailer=(1 << 24 | 32,))


def _struct(b: BtfBuilder, name: str, size: int, members: list[tuple[str, int, int]]) -> int:
    trailer = tuple(x for n, t, off in members for x in (b.name(n), t, off))
    return b.type(name, Kind.STRUCT, vlen=len(members), su=size, trailer=trailer)


def _with_map(b: BtfBuilder, value_type: int, value_size: int) -> None:
    """A ``.maps`` ARRAY map ``m`` whose value is ``value_type`` (DATASEC sized, so no
    ELF symbol is needed to fix it up)."""
    int_ = _int(b)
    idx = b.type("__ARRAY_SIZE_TYPE__", Kind.INT, su=4, trailer=(32,))
    arr2 = b.type("", Kind.ARRAY, trailer=(int_, idx, 2))  # BPF_MAP_TYPE_ARRAY
    arr1 = b.type("", Kind.ARRAY, trailer=(int_, idx, 1))
    p_type, p_max = b.type("", Kind.PTR, su=arr2), b.type("", Kind.PTR, su=arr1)
    p_key, p_value = b.type("", Kind.PTR, su=int_), b.type("", Kind.PTR, su=value_type)
    st = _struct(b, "", 32, [("type", p_type, 0), ("max_entries", p_max, 64),
                             ("key", p_key, 128), ("value", p_value, 192)])
    var = b.type("m", Kind.VAR, su=st, trailer=(1,))
    b.type(".maps", Kind.DATASEC, vlen=1, su=32, trailer=(var, 0, 32))
    del value_size


def self_by_value() -> bytes:
    b = BtfBuilder()
    _struct(b, "a", 4, [("x", 1, 0)])  # struct a { struct a x; }
    return bpf_elf(b.build())


def mutual_by_value() -> bytes:
    b = BtfBuilder()
    _struct(b, "a", 4, [("b", 2, 0)])
    _struct(b, "b", 4, [("a", 1, 0)])
    return bpf_elf(b.build())


def pointer_cycle() -> bytes:
    b = BtfBuilder()
    p1 = b.type("", Kind.PTR, su=2)
    b.type("", Kind.PTR, su=p1)
    _struct(b, "s", 8, [("p", p1, 0)])
    return bpf_elf(b.build())


def deep_struct_nesting(depth: int = 1000) -> bytes:
    b = BtfBuilder()
    int_ = _int(b)
    inner = int_
    for i in range(depth):
        inner = _struct(b, f"s{i}", 4, [("x", inner, 0)])
    return bpf_elf(b.build())


def deep_qualifier_chain(depth: int = 1000) -> bytes:
    b = BtfBuilder()
    t = _int(b)
    for _ in range(depth):
        t = b.type("", Kind.CONST, su=t)
    _struct(b, "s", 4, [("x", t, 0)])
    return bpf_elf(b.build())


def deep_pointer_chain(depth: int = 1000) -> bytes:
    b = BtfBuilder()
    t = _int(b)
    for _ in range(depth):
        t = b.type("", Kind.PTR, su=t)
    _struct(b, "s", 8, [("p", t, 0)])
    return bpf_elf(b.build())


def deep_array_map_value(depth: int = 200) -> bytes:
    """A map value nested 200 arrays deep: once exit 0 and a module Python cannot parse."""
    b = BtfBuilder()
    char = b.type("char", Kind.INT, su=1, trailer=(1 << 24 | 8,))
    idx = b.type("__ARRAY_SIZE_TYPE__", Kind.INT, su=4, trailer=(32,))
    t = char
    for _ in range(depth):
        t = b.type("", Kind.ARRAY, trailer=(t, idx, 1))
    _with_map(b, t, 1)
    return bpf_elf(b.build())


def unnamed_scalar_member() -> bytes:
    b = BtfBuilder()
    int_ = _int(b)
    _struct(b, "s", 8, [("a", int_, 0), ("", int_, 32)])
    return bpf_elf(b.build())


def zero_sized_enum() -> bytes:
    b = BtfBuilder()
    e = b.type("e", Kind.ENUM, vlen=1, su=0, trailer=(b.name("E_A"), 1))
    _struct(b, "s", 4, [("e", e, 0)])
    return bpf_elf(b.build())


def var_cycle() -> bytes:
    """A map whose key is a VAR of itself (found by make fuzz: Spec.sizeof recursed)."""
    b = BtfBuilder()
    char = b.type("char", Kind.INT, su=1, trailer=(1 << 24 | 8,))
    var = b.type("v", Kind.VAR, su=b.next_id, trailer=(1,))  # its own type id
    _with_map(b, char, 1)
    del var
    return bpf_elf(b.build())


def self_inner_map() -> bytes:
    """A map of maps whose inner template is its own definition (found by make fuzz: the
    reader recursed through the templates)."""
    b = BtfBuilder()
    int_ = _int(b)
    idx = b.type("__ARRAY_SIZE_TYPE__", Kind.INT, su=4, trailer=(32,))
    kind = b.type("", Kind.ARRAY, trailer=(int_, idx, 12))  # BPF_MAP_TYPE_ARRAY_OF_MAPS
    p_type = b.type("", Kind.PTR, su=kind)
    st_id = b.next_id + 2
    p_self = b.type("", Kind.PTR, su=st_id)
    values = b.type("", Kind.ARRAY, trailer=(p_self, idx, 0))
    st = _struct(b, "", 8, [("type", p_type, 0), ("values", values, 64)])
    assert st == st_id
    var = b.type("m", Kind.VAR, su=st, trailer=(1,))
    b.type(".maps", Kind.DATASEC, vlen=1, su=8, trailer=(var, 0, 8))
    return bpf_elf(b.build())


def bitfields_out_of_order() -> bytes:
    """Struct members out of offset order, one a bitfield of an array (found by exec'ing
    fuzzed modules: the module failed at import with a negative bit position)."""
    b = BtfBuilder()
    u8 = b.type("unsigned char", Kind.INT, su=1, trailer=(8,))
    u32 = b.type("unsigned int", Kind.INT, su=4, trailer=(32,))
    b.type("s", Kind.STRUCT, vlen=2, kflag=1, su=4,
           trailer=(b.name("a"), u8, 3 << 24 | 8, b.name("b"), u32, 9 << 24 | 3))
    return bpf_elf(b.build())


def bitfield_of_array() -> bytes:
    b = BtfBuilder()
    char = b.type("char", Kind.INT, su=1, trailer=(1 << 24 | 8,))
    idx = b.type("__ARRAY_SIZE_TYPE__", Kind.INT, su=4, trailer=(32,))
    arr = b.type("", Kind.ARRAY, trailer=(char, idx, 4))
    b.type("s", Kind.STRUCT, vlen=1, kflag=1, su=4, trailer=(b.name("a"), arr, 9 << 24 | 0))
    return bpf_elf(b.build())


def escape_in_names() -> bytes:
    """Names holding a newline and an ANSI escape, in a struct that contains itself."""
    b = BtfBuilder()
    _struct(b, "evil\n\x1b[31mred", 4, [("x", 1, 0)])
    return bpf_elf(b.build())


@dataclass(frozen=True)
class Case:
    build: Callable[[], bytes]
    message: str  # in the one-line error
    all_types: bool = True


CASES: dict[str, Case] = {
    "self_by_value": Case(self_by_value,
                          "contains itself by value: struct a (type id 1) -> struct a"),
    "mutual_by_value": Case(mutual_by_value, "contains itself by value"),
    "pointer_cycle": Case(pointer_cycle, "pointer/typedef/qualifier/array/var cycle"),
    "var_cycle": Case(var_cycle, "2 (VAR) -> 2 (VAR)"),
    "self_inner_map": Case(self_inner_map, "multi-level inner maps are not supported",
                           all_types=False),
    "deep_struct_nesting": Case(deep_struct_nesting, "nested more than 100 levels deep"),
    "deep_qualifier_chain": Case(deep_qualifier_chain, "a chain of"),
    "deep_pointer_chain": Case(deep_pointer_chain, "a chain of"),
    "deep_array_map_value": Case(deep_array_map_value, "a chain of", all_types=False),
    "unnamed_scalar_member": Case(unnamed_scalar_member, "has no name and is of kind INT"),
    "zero_sized_enum": Case(zero_sized_enum, "ENUM size 0, expected 1, 2, 4 or 8"),
    "bitfields_out_of_order": Case(bitfields_out_of_order,
                                   "bit offset 3 is before the previous member's (8)"),
    "bitfield_of_array": Case(bitfield_of_array,
                              "a 9-bit bitfield of kind ARRAY, not an integer or enum"),
    "escape_in_names": Case(escape_in_names, "struct evil\\n\\x1b[31mred (type id 1)"),
}
