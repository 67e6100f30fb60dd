"""The BTF decoder against its oracle, bpftool: for every object built here (both byte
orders), for hand-built BTF covering what clang 14 cannot emit (ENUM64, signed enums), and
for the running kernel's vmlinux, ``dump_raw(decode_btf(x))`` must equal
``bpftool btf dump file x format raw`` line for line. Malformed input must raise BTFError
naming a byte offset, never another exception."""

from __future__ import annotations

import copy
import pickle
import re
import struct
import subprocess
from pathlib import Path

import pytest
from ebpf_gen.btf import wire
from ebpf_gen.btf.decode import decode_btf
from ebpf_gen.btf.raw import dump_raw
from ebpf_gen.btf.types import (
    Deferred,
    Enum,
    EnumValue,
    Func,
    FuncProto,
    Kind,
    Linkage,
    Member,
    Param,
    Ptr,
    Spec,
    Struct,
    Typedef,
    Union_,
    Void,
)
from ebpf_gen.errors import BTFError
from ebpf_gen.source._clang import system_clang
from elftools.elf.elffile import ELFFile

from .conftest import REPO, compile_bpf, need, require_tool

SNIPPETS = sorted((REPO / "tests" / "btf_snippets").glob("*.bpf.c"))
EXAMPLES = sorted((REPO / "examples").glob("*.bpf.c"))
SOURCES = SNIPPETS + EXAMPLES
VMLINUX = Path("/sys/kernel/btf/vmlinux")
TARGETS = ("bpfel", "bpfeb")


def bpftool_raw(path: Path) -> str:
    bpftool = require_tool("bpftool")
    proc = subprocess.run([bpftool, "btf", "dump", "file", str(path), "format", "raw"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"bpftool failed on {path}: {proc.stderr}"
    return proc.stdout


def btf_section(obj: Path) -> bytes:
    with obj.open("rb") as f:
        sec = ELFFile(f).get_section_by_name(".BTF")
        assert sec is not None, f"{obj}: no .BTF section"
        data: bytes = sec.data()
        return data


def assert_same_dump(ours: str, theirs: str, what: str) -> None:
    if ours == theirs:
        return
    a, b = ours.splitlines(), theirs.splitlines()
    for n, (x, y) in enumerate(zip(a, b, strict=False), 1):
        if x != y:
            pytest.fail(f"{what}: line {n} differs\n  ours:    {x!r}\n  bpftool: {y!r}")
    pytest.fail(f"{what}: {len(a)} lines from us, {len(b)} from bpftool")


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    require_tool("clang")
    out = tmp_path_factory.mktemp("btf_objects")
    built = {}
    for src in SOURCES:
        for target in TARGETS:
            name = src.name.removesuffix(".bpf.c")
            built[name, target] = compile_bpf(src, out / f"{name}_{target}.o", target=target)
    return built


def _ids(src: Path) -> str:
    return src.name.removesuffix(".bpf.c")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("src", SOURCES, ids=_ids)
def test_dump_matches_bpftool(objects: dict[tuple[str, str], Path], src: Path,
                              target: str) -> None:
    obj = objects[_ids(src), target]
    spec = decode_btf(btf_section(obj))
    assert spec.byteorder == ("little" if target == "bpfel" else "big")
    assert_same_dump(dump_raw(spec), bpftool_raw(obj), obj.name)


@pytest.mark.parametrize("src", SOURCES, ids=_ids)
def test_big_endian_decodes_to_the_same_model(objects: dict[tuple[str, str], Path],
                                              src: Path) -> None:
    little = decode_btf(btf_section(objects[_ids(src), "bpfel"]))
    big = decode_btf(btf_section(objects[_ids(src), "bpfeb"]))
    assert little.types == big.types


def test_snippet_covers_every_kind_clang_emits(objects: dict[tuple[str, str], Path]) -> None:
    spec = decode_btf(btf_section(objects["kinds", "bpfel"]))
    seen = {t.kind for t in spec}
    # clang 14 writes the 8-byte enum u64e as an ENUM (values cut to 32 bits) and never marks
    # an enum signed; clang 15 and newer write it as ENUM64. The hand-built tests cover both
    # on either toolchain.
    enum64 = system_clang().major >= 15
    assert seen == set(Kind) - (set() if enum64 else {Kind.ENUM64}), set(Kind) ^ seen
    bits = spec.named("bits", Kind.STRUCT)[0]
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in bits.members][:3] == [
        ("a", 0, 3), ("b", 3, 5), ("c", 8, 40)]
    u64e = spec.named("u64e", Kind.ENUM64 if enum64 else Kind.ENUM)[0]
    assert isinstance(u64e, Enum) and u64e.size == 8


def test_vmlinux_matches_bpftool(tmp_path: Path) -> None:
    need(None if VMLINUX.exists() else "kernel has no /sys/kernel/btf/vmlinux")
    data = VMLINUX.read_bytes()
    spec = decode_btf(data, where=str(VMLINUX))
    assert len(spec) > 1000
    assert_same_dump(dump_raw(spec), bpftool_raw(VMLINUX), str(VMLINUX))


# Hand-built BTF: what clang 14 cannot emit, in both byte orders, checked against bpftool.

class BtfBuilder:
    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.words: list[int] = []
        self.next_id = 1

    def name(self, s: str) -> int:
        if not s:
            return 0
        off = len(self.strings)
        self.strings += s.encode() + b"\0"
        return off

    def type(self, name: str, kind: Kind, vlen: int = 0, kflag: int = 0, su: int = 0,
             trailer: tuple[int, ...] = ()) -> int:
        self.words += [self.name(name), kflag << 31 | kind << 24 | vlen, su, *trailer]
        self.next_id += 1
        return self.next_id - 1

    def build(self, order: str = "<") -> bytes:
        types = struct.pack(f"{order}{len(self.words)}I", *(w & 0xFFFFFFFF for w in self.words))
        header = struct.pack(f"{order}HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                             len(self.strings))
        return header + types + bytes(self.strings)


def handbuilt() -> BtfBuilder:
    b = BtfBuilder()
    int_ = b.type("int", Kind.INT, su=4, trailer=(1 << 24 | 32,))
    b.type("u3_at_2", Kind.INT, su=1, trailer=(2 << 16 | 3,))  # bits_offset/nr_bits
    b.type("weird_enc", Kind.INT, su=1, trailer=(3 << 24 | 8,))  # SIGNED|CHAR: "UNKN"
    vals64 = ((b.name("BIG"), 0, 1), (b.name("MAX"), 0xFFFFFFFF, 0xFFFFFFFF),
              (b.name("ODD"), 0x89ABCDEF, 0x01234567))
    b.type("u64", Kind.ENUM64, vlen=3, su=8, trailer=sum(vals64, ()))
    b.type("s64", Kind.ENUM64, vlen=3, kflag=1, su=8, trailer=sum(vals64, ()))
    b.type("s32", Kind.ENUM, vlen=2, kflag=1, su=4,
           trailer=(b.name("NEG"), 0x80000000, b.name("M1"), 0xFFFFFFFF))
    b.type("s8", Kind.ENUM, vlen=1, kflag=1, su=1, trailer=(b.name("MINUS"), 0xFFFFFFFE))
    proto = b.type("", Kind.FUNC_PROTO, vlen=2, su=int_,
                   trailer=(b.name("x"), int_, 0, 0))
    for linkage in Linkage:
        b.type(f"f_{linkage.name.lower()}", Kind.FUNC, vlen=linkage, su=proto)
    for linkage in Linkage:
        b.type(f"v_{linkage.name.lower()}", Kind.VAR, su=int_, trailer=(linkage,))
    b.type("", Kind.ENUM, vlen=0, su=4)
    b.type("dbl", Kind.FLOAT, su=8)
    b.type("tag", Kind.DECL_TAG, su=int_, trailer=(2,))
    return b


@pytest.mark.parametrize("order", ["<", ">"])
def test_handbuilt_matches_bpftool(tmp_path: Path, order: str) -> None:
    data = handbuilt().build(order)
    path = tmp_path / "handbuilt.btf"
    path.write_bytes(data)
    spec = decode_btf(data)
    assert_same_dump(dump_raw(spec), bpftool_raw(path), f"hand-built BTF ({order})")
    s64 = spec.named("s64")[0]
    assert isinstance(s64, Enum) and s64.kind == Kind.ENUM64 and s64.signed
    assert [v.value for v in s64.values] == [1 << 32, -1, 0x0123456789ABCDEF]
    u64 = spec.named("u64")[0]
    assert isinstance(u64, Enum) and u64.values[1].value == 2**64 - 1


def test_records_compare_like_dataclasses() -> None:
    # The decoder builds records with tuple.__new__(cls, fields), not cls(*fields).
    assert tuple.__new__(Member, ("m", 1, 2, 3)) == Member("m", 1, 2, 3)
    assert hash(tuple.__new__(Func, (1, "f", 2, Linkage.GLOBAL))) == hash(
        Func(1, "f", 2, Linkage.GLOBAL))
    # Same fields, different kinds: two tuples that are equal, two records that are not.
    assert Ptr(1, "", 2) != Typedef(1, "", 2)
    assert not Ptr(1, "", 2) == Typedef(1, "", 2)  # noqa: SIM201 (__eq__ itself)
    assert Param("x", 0) != EnumValue("x", 0) and Param("x", 0) != ("x", 0)
    assert len({Ptr(1, "", 2), Typedef(1, "", 2), Ptr(1, "", 2)}) == 2
    m = Member("m", 1, 2, 3)
    with pytest.raises(AttributeError):  # immutable
        m.name = "x"  # type: ignore[misc]
    assert Func(1, "f", 2, Linkage.GLOBAL).kind == Kind.FUNC and Void().kind == Kind.VOID
    assert repr(m) == "Member(name='m', type=1, bit_offset=2, bitfield_size=3)"


# Malformed input: BTFError naming a byte offset, never IndexError/struct.error/KeyError.

OFFSET = re.compile(r"offset \d+")


def expect_btf_error(data: bytes, *, contains: str = "") -> BTFError:
    with pytest.raises(BTFError) as info:
        decode_btf(data)
    msg = str(info.value)
    assert OFFSET.search(msg), msg
    assert contains in msg, msg
    return info.value


def record_offsets(data: bytes) -> list[int]:
    """Byte offset of each type record (index = type id), walked independently of decode."""
    hdr = wire.read_header(data)
    w = wire.u32_words(data, hdr.hdr_len + hdr.type_off, hdr.type_len, hdr.byteorder)
    offs, i = [0], 0
    while i < len(w):
        offs.append(hdr.hdr_len + hdr.type_off + 4 * i)
        kind = w[i + 1] >> 24 & 0x1F
        i += 3 + wire.FIXED_WORDS[kind] + wire.VLEN_WORDS[kind] * (w[i + 1] & 0xFFFF)
    return offs


@pytest.fixture(scope="module")
def sample(objects: dict[tuple[str, str], Path]) -> bytes:
    return btf_section(objects["kinds", "bpfeb"])


def test_truncated_anywhere(sample: bytes) -> None:
    for cut in range(0, len(sample), 7):
        expect_btf_error(sample[:cut])


def test_type_section_cut_short_at_every_word(sample: bytes) -> None:
    """The header itself claims fewer type bytes: records run past the type section."""
    fmt = ">HBBIIIII"
    magic, ver, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        fmt, sample)
    boundaries = set(record_offsets(sample)[1:])
    for new_len in range(1, type_len):
        data = struct.pack(fmt, magic, ver, flags, hdr_len, type_off, new_len, str_off,
                           str_len) + sample[24:]
        if hdr_len + type_off + new_len in boundaries:
            # A clean cut between records is well formed, unless an earlier type refers
            # to one that was cut off.
            try:
                decode_btf(data)
            except BTFError as e:
                assert "refers to type id" in str(e) and OFFSET.search(str(e)), e
            continue
        expect_btf_error(data, contains="type")


def test_bad_magic_version_and_lengths(sample: bytes) -> None:
    expect_btf_error(b"\x00\x00" + sample[2:], contains="bad magic")
    expect_btf_error(sample[:2] + b"\x02" + sample[3:], contains="version")
    huge = sample[:20] + struct.pack(">I", 1 << 30) + sample[24:]
    expect_btf_error(huge, contains="string section")
    expect_btf_error(sample[:10], contains="truncated header")


def _patch(data: bytes, at: int, value: int) -> bytes:
    order = ">" if data[:2] == wire.MAGIC_BE else "<"
    return data[:at] + struct.pack(order + "I", value & 0xFFFFFFFF) + data[at + 4 :]


def _word(data: bytes, at: int) -> int:
    order = ">" if data[:2] == wire.MAGIC_BE else "<"
    value: int = struct.unpack_from(order + "I", data, at)[0]
    return value


@pytest.mark.parametrize("order", ["<", ">"])
def test_corrupted_records_name_their_type_and_offset(sample: bytes, order: str) -> None:
    data = sample if order == ">" else handbuilt().build("<")
    spec = decode_btf(data)
    offs = record_offsets(data)
    for tid in range(1, len(spec)):
        at = offs[tid]
        info = _word(data, at + 4)
        # unknown kind
        for kind in (0, 20, 31):
            err = expect_btf_error(_patch(data, at + 4, info & ~(0x1F << 24) | kind << 24))
            assert f"type id {tid} at offset {at}" in str(err) or "type id" in str(err)
        # name offset past the string table
        expect_btf_error(_patch(data, at, 0x7FFFFFFF), contains="name offset")
        # type id reference out of range, where the size/type word is a type id
        if spec[tid].kind in (Kind.PTR, Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.FUNC,
                              Kind.VAR, Kind.RESTRICT, Kind.TYPE_TAG, Kind.DECL_TAG):
            expect_btf_error(_patch(data, at + 8, 1_000_000),
                             contains=f"type id {tid} at offset {at}")


@pytest.mark.parametrize("target", TARGETS)
def test_corrupted_trailers_are_caught_at_decode(objects: dict[tuple[str, str], Path],
                                                 target: str) -> None:
    """Members and parameters are built on first use, but checked when decoded: a bad
    name offset or type id in any of them fails decode_btf, naming its record."""
    data = btf_section(objects["kinds", target])
    spec = decode_btf(data)
    offs = record_offsets(data)
    checked = 0
    for t in spec:
        if isinstance(t, (Struct, Union_)) and t.members:
            width = 3
        elif isinstance(t, FuncProto) and t.params:
            width = 2
        else:
            continue
        at = offs[t.id]
        last = at + 12 + 4 * width * (len(t[3]) - 1)  # the last member or parameter
        where = f"type id {t.id} at offset {at}"
        expect_btf_error(_patch(data, last, 0x7FFFFFFF), contains=f"{where}: name offset")
        err = expect_btf_error(_patch(data, last + 4, 1_000_000), contains=where)
        assert "refers to type id 1000000" in str(err), err
        checked += 1
    assert checked >= 3


def test_lazy_and_eager_decode_agree(objects: dict[tuple[str, str], Path]) -> None:
    for target in TARGETS:
        data = btf_section(objects["kinds", target])
        lazy, eager = decode_btf(data), decode_btf(data, lazy=False)
        assert lazy.types == eager.types and hash(lazy.types) == hash(eager.types)
        assert repr(lazy.types) == repr(eager.types)
        deferred = 0
        for t, e in zip(lazy, eager, strict=True):
            if isinstance(t, (Struct, Union_, FuncProto)):
                field, built = t[3], e[3]  # the raw fields
                assert type(built) is tuple
                if type(field) is not Deferred:
                    continue
                deferred += 1
                assert field == built and built == field and hash(field) == hash(built)
                assert tuple(field) == built and len(field) == len(built)
                assert repr(field) == repr(built)
                # Loaded once: the same tuple on every read.
                read = t.members if isinstance(t, (Struct, Union_)) else t.params
                assert read is field.get() and read == built
        assert deferred >= 3
        # deepcopy and pickle carry the loaded tuples, not the loader and its words.
        for copied in (copy.deepcopy(lazy.types), pickle.loads(pickle.dumps(lazy.types))):
            assert copied == eager.types
            assert all(type(t[3]) is tuple for t in copied
                       if isinstance(t, (Struct, Union_, FuncProto)))


def test_typedef_cycle_is_rejected() -> None:
    b = BtfBuilder()
    b.type("int", Kind.INT, su=4, trailer=(32,))
    b.type("a", Kind.TYPEDEF, su=3)
    b.type("", Kind.CONST, su=2)
    expect_btf_error(b.build(), contains="cycle")
    b = BtfBuilder()
    b.type("self", Kind.TYPEDEF, su=1)
    expect_btf_error(b.build(">"), contains="cycle")


def test_chain_depth_limit_is_exact() -> None:
    # The decoder's quick peel of the chains must agree with the exact walk on where the
    # limit is: MAX_CHAIN links accepted, one more rejected; a loop hung under a long
    # chain still named as a cycle.
    from ebpf_gen.btf.decode import MAX_CHAIN

    for links, ok in ((MAX_CHAIN, True), (MAX_CHAIN + 1, False)):
        b = BtfBuilder()
        b.type("int", Kind.INT, su=4, trailer=(32,))
        for tid in range(2, links + 2):
            b.type("", Kind.PTR, su=tid - 1)
        if ok:
            assert len(decode_btf(b.build())) == links + 2
        else:
            expect_btf_error(b.build(), contains=f"more than {MAX_CHAIN}")
    b = BtfBuilder()
    b.type("a", Kind.TYPEDEF, su=2)
    b.type("b", Kind.TYPEDEF, su=1)
    for tid in range(3, 40):
        b.type("", Kind.PTR, su=tid - 1)
    expect_btf_error(b.build(), contains="cycle")


def test_bad_linkage_and_string_table() -> None:
    b = BtfBuilder()
    b.type("int", Kind.INT, su=4, trailer=(32,))
    b.type("v", Kind.VAR, su=1, trailer=(7,))
    expect_btf_error(b.build(), contains="linkage")
    data = bytearray(handbuilt().build())
    data[-1] = ord("x")  # string table no longer NUL-terminated
    expect_btf_error(bytes(data), contains="string section")


def test_decoded_params_and_vararg(objects: dict[tuple[str, str], Path]) -> None:
    spec: Spec = decode_btf(btf_section(objects["kinds", "bpfel"]))
    protos = [t for t in spec if t.kind == Kind.FUNC_PROTO]
    assert any(p.params and p.params[-1] == Param("", 0) for p in protos)
