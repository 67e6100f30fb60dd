"""ctypes_fmt/collect/render on hand-built BTF: layout tables, hostile names, ast.parse."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from ebpf_gen.btf.types import (
    Array,
    Enum,
    EnumValue,
    Int,
    IntEncoding,
    Member,
    Ptr,
    Spec,
    Struct,
    Type,
    Typedef,
    Union_,
    Void,
)
from ebpf_gen.ctypes_fmt import ArrayOf, ClassRef, Formatter, Scalar
from ebpf_gen.errors import GenError, LayoutError
from ebpf_gen.model import MapDef, ObjectModel, VariableDef
from ebpf_gen.render import module_context, render_module

U8 = Int(1, "unsigned char", 1, IntEncoding.NONE, 0, 8)
U32 = Int(2, "unsigned int", 4, IntEncoding.NONE, 0, 32)
I64 = Int(3, "long", 8, IntEncoding.SIGNED, 0, 64)
CHAR = Int(4, "char", 1, IntEncoding.SIGNED, 0, 8)
BOOL = Int(5, "_Bool", 1, IntEncoding.BOOL, 0, 8)
BASE: list[Type] = [Void(), U8, U32, I64, CHAR, BOOL]


def spec_of(*types: Type) -> Spec:
    return Spec(tuple([*BASE, *types]), "little")


def m(name: str, type_id: int, bit_offset: int, bits: int = 0) -> Member:
    return Member(name, type_id, bit_offset, bits)


def layout(spec: Spec, tid: int, names: dict[int, str] | None = None) -> Any:
    names = names or {t.id: f"T{t.id}" for t in spec.types if isinstance(t, (Struct, Union_))}
    return Formatter(spec, names).record(tid)


def fields(rec: Any) -> list[tuple[str, Any, int, int]]:
    return [(f.name, f.ctype, f.offset, f.bits) for f in rec.fields]


u8, u32, i64 = (
    Scalar("c_uint8", "int", 1),
    Scalar("c_uint32", "int", 4),
    Scalar("c_int64", "int", 8),
)


def test_natural_layout_needs_no_padding() -> None:
    s = spec_of(Struct(6, "s", 16, (m("a", 1, 0), m("b", 2, 32), m("c", 3, 64))))
    rec = layout(s, 6)
    assert fields(rec) == [("a", u8, 0, 0), ("b", u32, 4, 0), ("c", i64, 8, 0)]
    assert not rec.pack
    assert rec.offsets == {"a": 0, "b": 4, "c": 8}


def test_over_aligned_member_and_tail_get_named_padding() -> None:
    # struct { char a; int b __aligned(8); } __aligned(16): b at 8, size 16
    s = spec_of(Struct(6, "s", 16, (m("a", 1, 0), m("b", 2, 64))))
    rec = layout(s, 6)
    assert fields(rec) == [
        ("a", u8, 0, 0),
        ("_pad_1", ArrayOf(u8, 7), 1, 0),
        ("b", u32, 8, 0),
        ("_pad_12", ArrayOf(u8, 4), 12, 0),
    ]


def test_misaligned_member_switches_to_pack() -> None:
    s = spec_of(Struct(6, "p", 13, (m("a", 1, 0), m("b", 2, 8), m("c", 3, 40))))
    rec = layout(s, 6)
    assert rec.pack
    assert [f.offset for f in rec.fields] == [0, 1, 5]


def test_known_ctypes_bitfield_disagreement_uses_raw_storage() -> None:
    # struct { unsigned a:3, b:5; unsigned char c; }: clang puts c at 1, size 4
    s = spec_of(Struct(6, "bf", 4, (m("a", 2, 0, 3), m("b", 2, 3, 5), m("c", 1, 8))))
    rec = layout(s, 6)
    assert [f.name for f in rec.fields] == ["_bitfield_0", "c", "_pad_2"]
    assert [(b.name, b.storage, b.bit, b.bits) for b in rec.bitfields] == [
        ("a", "_bitfield_0", 0, 3),
        ("b", "_bitfield_0", 3, 5),
    ]


def test_bitfields_ctypes_agrees_on_stay_real() -> None:
    s = spec_of(Struct(6, "bf", 8, (m("a", 2, 0, 3), m("b", 2, 3, 29), m("c", 2, 32))))
    rec = layout(s, 6)
    assert fields(rec) == [("a", u32, 0, 3), ("b", u32, 0, 29), ("c", u32, 4, 0)]
    assert rec.bitfields == ()


def test_straddling_bitfield_in_packed_struct() -> None:
    s = spec_of(Struct(6, "st", 5, (m("t", 1, 0), m("a", 2, 8, 30), m("b", 2, 38, 2))))
    rec = layout(s, 6)
    assert [b.storage for b in rec.bitfields] == ["_bitfield_1", "_bitfield_1"]
    assert [(b.bit, b.bits) for b in rec.bitfields] == [(0, 30), (30, 2)]


def test_union_padding_char_arrays_pointers_bool() -> None:
    arr = Array(6, "", 4, 2, 16)
    ptr = Ptr(7, "", 4)
    u = Union_(8, "u", 24, (m("name", 6, 0), m("p", 7, 0), m("ok", 5, 0)))
    rec = layout(spec_of(arr, ptr, u), 8)
    assert fields(rec) == [
        ("name", ArrayOf(Scalar("c_char", "bytes", 1), 16), 0, 0),
        ("p", Scalar("c_uint64", "int", 8), 0, 0),
        ("ok", Scalar("c_bool", "bool", 1), 0, 0),
        ("_pad_0", ArrayOf(u8, 24), 0, 0),
    ]
    assert rec.fields[1].comment == "char *"


def test_typedef_struct_and_enum_fields() -> None:
    inner = Struct(6, "in", 4, (m("x", 2, 0),))
    td = Typedef(7, "in_t", 6)
    e = Enum(8, "e", 2, True, (EnumValue("A", -1),))
    outer = Struct(9, "out", 8, (m("i", 7, 0), m("k", 8, 32)))
    rec = layout(spec_of(inner, td, e, outer), 9)
    assert fields(rec) == [
        ("i", ClassRef(6, "T6"), 0, 0),
        ("k", Scalar("c_int16", "int", 2), 4, 0),
    ]  # ctypes' own tail padding (to the alignment of 4) reaches BTF's size 8


def test_overlapping_members_fail_naming_type_member_and_offsets() -> None:
    s = spec_of(Struct(6, "bad", 8, (m("a", 2, 0), m("b", 2, 16))))
    with pytest.raises(LayoutError, match=r"struct bad.*member b") as e:
        layout(s, 6)
    assert "offset 2" in str(e.value) or "not 4-aligned" in str(e.value)


def test_member_past_the_size_fails() -> None:
    s = spec_of(Struct(6, "short", 4, (m("a", 3, 0),)))
    with pytest.raises(LayoutError, match="struct short"):
        layout(s, 6)


# -- whole modules from hand-built models --------------------------------------------------

HOSTILE = [
    "x; import os",
    "q\"uote's",
    'tri"""ple',
    "new\nline",
    "back\\slash",
]


def hostile_model() -> ObjectModel:
    types: list[Type] = list(BASE)
    variables = []
    for i, name in enumerate(HOSTILE):
        sid = len(types)
        types.append(Struct(sid, name, 4, (m(name, 2, 0),)))
        variables.append(VariableDef(name, ".bss", 4 * i, 4, sid))
    eid = len(types)
    types.append(Enum(eid, "e; import os", 4, False, (EnumValue("x; import os", 1),)))
    sid = len(types)
    types.append(Struct(sid, "holder", 4, (m("k", eid, 0),)))
    variables.append(VariableDef("holder", ".data", 0, 4, sid))
    maps = (MapDef("m; import os", 1, "HASH", 2, sid, 4, 4, 8, 0),)
    return ObjectModel(Spec(tuple(types), "little"), maps, (), tuple(variables))


def render(model: ObjectModel, **kw: Any) -> str:
    context = module_context(
        model,
        stem="hostile",
        source='src/"""evil""".bpf.c',
        objects={"little": ("hostile_bpfel.o", "0" * 64)},
        **kw,
    )
    return render_module(context)


def test_hostile_names_stay_data(tmp_path: Path) -> None:
    text = render(hostile_model())
    assert text == render(hostile_model())  # deterministic
    tree = ast.parse(text)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    found = {getattr(n, "module", None) or n.names[0].name for n in imports}
    # typing only under TYPE_CHECKING; collections.abc only for Sequence members
    assert {"__future__", "ctypes", "ebpf_gen.runtime"} <= found <= {
        "__future__",
        "ctypes",
        "collections.abc",
        "typing",
        "ebpf_gen.runtime",
    }
    path = tmp_path / "hostile.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("_hostile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_hostile"] = module
    spec.loader.exec_module(module)
    for name in HOSTILE:
        cls = module.C_TYPES[f"struct {name}"]
        assert cls.__doc__ == f"struct {name}."
    assert module.__doc__.startswith('Skeleton for the BPF object built from src/"""evil"""')
    assert [v.name for v in module.OBJECT.variables][: len(HOSTILE)] == HOSTILE
    assert module.OBJECT.maps[0].name == "m; import os"


def test_unknown_type_name_suggests_close_matches() -> None:
    with pytest.raises(GenError, match=r"--type holdr: no struct.*did you mean holder"):
        render(hostile_model(), types=["holdr"])
    assert "class Holder(" in render(hostile_model(), types=["struct holder"])


def test_all_types_outputs_parse() -> None:
    text = render(hostile_model(), all_types=True)
    ast.parse(text)
    assert "check_layout(" in text
