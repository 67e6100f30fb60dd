"""C source analysis: event types inferred from helper calls, structs laid out from source.

Every test compiles a real snippet with clang, reads the object's real BTF, and analyses the
same source with libclang. The layout tests compile each snippet twice, once with an unused
global that puts the struct into BTF, and demand that the source layout equals clang's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from ebpf_gen.btf.types import (
    Array,
    Enum,
    Float,
    FuncProto,
    Fwd,
    Int,
    Ptr,
    Qualifier,
    Spec,
    Struct,
    Typedef,
    Union_,
)
from ebpf_gen.errors import GenError, SourceError
from ebpf_gen.model import ObjectModel, no_source_diagnostics
from ebpf_gen.objspec import read_object
from ebpf_gen.source import analyze, parse, synthesize

from .conftest import REPO, compile_bpf

# Relative on purpose: diagnostics must name the file as the user gave it.
SNIPPETS = Path("tests/source_snippets")


@pytest.fixture(autouse=True)
def _at_repo(monkeypatch: pytest.MonkeyPatch, clang: str) -> None:
    monkeypatch.chdir(REPO)


def build(tmp_path: Path, name: str, *defines: str,
          target: str = "bpfel") -> tuple[Path, ObjectModel]:
    src = SNIPPETS / name
    out = tmp_path / f"{name}{'_'.join(defines)}_{target}.o"
    return src, read_object(compile_bpf(src, out, target=target, extra=defines))


def event_map(model: ObjectModel, name: str) -> Any:
    return next(m for m in model.maps if m.name == name)


def warnings(model: ObjectModel) -> list[str]:
    return [str(d) for d in model.diagnostics]


def shape(spec: Spec, tid: int) -> object:
    """What a type means for layout, with ids replaced by structure (ids differ)."""
    t = spec[tid]
    if isinstance(t, (Struct, Union_)):
        return (t.kind.name, t.name, t.size, tuple(
            (m.name, m.bit_offset, m.bitfield_size, spec.sizeof(m.type), shape(spec, m.type))
            for m in t.members))
    if isinstance(t, Typedef):
        return ("typedef", t.name, shape(spec, t.type))
    if isinstance(t, Qualifier):
        return (t.kind.name, shape(spec, t.type))
    if isinstance(t, Int):
        return ("int", t.name, t.size, t.encoding, t.bits)
    if isinstance(t, Float):
        return ("float", t.name, t.size)
    if isinstance(t, Array):
        return ("array", t.nelems, shape(spec, t.type), shape(spec, t.index_type))
    if isinstance(t, Enum):
        return ("enum", t.name, t.size, t.signed, t.values)
    if isinstance(t, Ptr):
        # BTF has the pointee laid out, the source side a forward declaration: a pointer is
        # a u64 to user space, so only the name it points at matters
        target = spec.skip_qualifiers(t.type)
        if isinstance(target, (Struct, Union_, Fwd)):
            return ("ptr", "record", target.name)
        return ("ptr", shape(spec, t.type))
    if isinstance(t, FuncProto):
        return ("proto", shape(spec, t.return_type), tuple(shape(spec, p.type) for p in t.params))
    return (t.kind.name, t.name)


def btf_id(model: ObjectModel, name: str) -> int:
    found = [t.id for t in model.btf.types if t.name == name and isinstance(t, (Struct, Union_))]
    assert len(found) == 1, f"{name}: {found}"
    return found[0]


# --- hello-buffer: the struct that never reaches BTF ----------------------------------------

def test_hello_buffer_perf_output_is_typed_from_source(tmp_path: Path) -> None:
    src, model = build(tmp_path, "hello_buffer.bpf.c")
    assert not [t for t in model.btf.types if t.name == "data_t"], "premise: not in BTF"

    out = analyze(src, [], model, [])

    tid = event_map(out, "output").event_type
    assert tid is not None and tid >= len(model.btf)  # appended, fresh id
    data = out.btf[tid]
    assert isinstance(data, Struct) and data.name == "data_t" and data.size == 36
    assert [(m.name, m.bit_offset // 8, out.btf.sizeof(m.type)) for m in data.members] == [
        ("pid", 0, 4), ("uid", 4, 4), ("command", 8, 16), ("message", 24, 12)]
    # members reuse what BTF already has: `int` and `char` are clang's own
    assert data.members[0].type < len(model.btf)
    assert out.source_types == {tid: "tests/source_snippets/hello_buffer.bpf.c:5"}
    assert out.btf.types[: len(model.btf)] == model.btf.types  # appended, nothing rewritten

    [warning] = warnings(out)
    assert warning.startswith(
        "tests/source_snippets/hello_buffer.bpf.c:5:8: warning: struct data_t is not in BTF: ")
    for why_and_how in ("clang emits only types that a map, global variable or function",
                        "bpf_perf_event_output() on map 'output'",
                        "`struct data_t *unused_data_t __attribute__((unused));`",
                        "__type(value, ...)", "--type data_t"):
        assert why_and_how in warning
    assert "\n" not in warning


def test_unused_global_puts_it_in_btf_and_silences_the_warning(tmp_path: Path) -> None:
    src, model = build(tmp_path, "hello_buffer.bpf.c", "-DIN_BTF")
    out = analyze(src, ["-DIN_BTF"], model, [])
    assert warnings(out) == []
    assert out.btf is model.btf and out.source_types == {}
    assert event_map(out, "output").event_type == btf_id(model, "data_t")


@pytest.mark.kernel
def test_the_suggested_global_loads_with_libbpf_and_type_value_does_not(tmp_path: Path) -> None:
    """The warning's advice, checked against the real libbpf and kernel."""
    src, _ = build(tmp_path, "hello_buffer.bpf.c", "-DIN_BTF")
    good = compile_bpf(src, tmp_path / "good.o", extra=("-DIN_BTF",))
    typed = tmp_path / "typed.bpf.c"
    typed.write_text(src.read_text().replace(
        "__uint(value_size, sizeof(int));", "__type(value, struct data_t);"))
    bad = compile_bpf(typed, tmp_path / "bad.o")
    assert _libbpf_load(good) == 0
    assert _libbpf_load(bad) != 0


def _libbpf_load(obj: Path) -> int:
    lib = ctypes.CDLL(ctypes.util.find_library("bpf") or "libbpf.so.1", use_errno=True)
    lib.bpf_object__open_file.restype = ctypes.c_void_p
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    lib.bpf_object__load.argtypes = [ctypes.c_void_p]
    lib.bpf_object__close.argtypes = [ctypes.c_void_p]
    lib.libbpf_get_error.argtypes = [ctypes.c_void_p]
    lib.libbpf_get_error.restype = ctypes.c_long
    handle = lib.bpf_object__open_file(os.fsencode(obj), None)
    assert handle and lib.libbpf_get_error(handle) == 0, f"{obj}: cannot open"
    try:
        return int(lib.bpf_object__load(handle))
    finally:
        lib.bpf_object__close(handle)


def test_type_option_synthesises_without_warning(tmp_path: Path) -> None:
    src, model = build(tmp_path, "hello_buffer.bpf.c")
    for spelled in ("data_t", "struct data_t"):
        out = analyze(src, [], model, [spelled])
        assert warnings(out) == []
        tid = event_map(out, "output").event_type
        assert tid is not None and out.btf[tid].name == "data_t"


def test_type_option_for_a_struct_nothing_sends(tmp_path: Path) -> None:
    src, model = build(tmp_path, "layout.bpf.c")
    assert not [t for t in model.btf.types if t.name == "config_t"]
    out = analyze(src, [], model, ["config_t"])
    config = [t for t in out.btf.types if t.name == "config_t"]
    assert len(config) == 1 and isinstance(config[0], Struct) and config[0].size == 12
    assert out.source_types[config[0].id] == "tests/source_snippets/layout.bpf.c:58"
    # the one warning is about struct layout (sent, not asked for); none about config_t
    assert [w for w in warnings(out) if "config_t" in w] == []


# --- ring buffers ---------------------------------------------------------------------------

def test_ring_buffer_output_and_reserve_forms(tmp_path: Path) -> None:
    src, model = build(tmp_path, "ring.bpf.c")
    out = analyze(src, [], model, [])
    got = {}
    for name in ("rb_out", "rb_assign", "rb_decl", "rb_typedef"):
        tid = event_map(out, name).event_type
        assert tid is not None, name
        got[name] = out.btf[tid]
    assert got["rb_out"].name == "out_event"  # bpf_ringbuf_output(&rb, &o, ...)
    assert got["rb_decl"].name == "decl_event"  # struct decl_event *d = reserve(...)
    # e = reserve(ring, ...) in submit(), reached through relay(ring) from relay(&rb_assign)
    assert got["rb_assign"].name == "res_event"
    # a typedef'd anonymous struct: the typedef carries the name the formatter needs
    td = got["rb_typedef"]
    assert isinstance(td, Typedef) and td.name == "anon_event_t"
    anon = out.btf.resolve(td.id)
    assert isinstance(anon, Struct) and anon.name == "" and anon.size == 8
    assert [(m.name, m.bit_offset) for m in anon.members] == [("tag", 0), ("value", 32)]
    assert out.btf.sizeof(event_map(out, "rb_out").event_type) == 16
    located = {w.split(": warning: ")[0]: w for w in warnings(out)}
    assert set(located) == {f"tests/source_snippets/ring.bpf.c:{pos}"
                            for pos in ("7:8", "12:8", "17:8", "22:9")}
    assert "bpf_ringbuf_reserve() on map 'rb_assign'" in located[
        "tests/source_snippets/ring.bpf.c:12:8"]


def test_ring_buffer_types_in_btf_are_reused(tmp_path: Path) -> None:
    src = tmp_path / "ring_in_btf.bpf.c"
    src.write_text((REPO / SNIPPETS / "ring.bpf.c").read_text().replace(
        'char LICENSE[]',
        "struct out_event *u1 __attribute__((unused));\n"
        "anon_event_t *u2 __attribute__((unused));\n"
        'char LICENSE[]'))
    model = read_object(compile_bpf(src, tmp_path / "ring_in_btf.o"))
    out = analyze(src, [], model, [])
    assert event_map(out, "rb_out").event_type == btf_id(model, "out_event")
    typedef = next(t.id for t in model.btf.types if t.name == "anon_event_t")
    assert event_map(out, "rb_typedef").event_type == typedef
    assert not [w for w in warnings(out) if "out_event" in w or "anon_event_t" in w]
    assert len([w for w in warnings(out) if "is not in BTF" in w]) == 2


def test_records_a_macro_defines_on_one_line_stay_apart(tmp_path: Path) -> None:
    """Two records at one source location (a macro's) are two types, not one."""
    src, model = build(tmp_path, "macro.bpf.c")
    out = analyze(src, [], model, [])
    names = {}
    for name in ("rb_a", "rb_b", "rb_anon_a", "rb_anon_b", "rb_deep"):
        tid = event_map(out, name).event_type
        assert tid is not None, name
        names[name] = (out.btf[tid].name, out.btf.sizeof(tid))
    assert names == {"rb_a": ("ev_a", 4), "rb_b": ("ev_b", 16), "rb_anon_a": ("anon_a_t", 4),
                     "rb_anon_b": ("anon_b_t", 16), "rb_deep": ("deep_ev", 3)}
    not_in_btf = [w for w in warnings(out) if "is not in BTF" in w]
    for shown in ("struct ev_a", "struct ev_b", "anon_a_t", "anon_b_t", "struct deep_ev"):
        assert len([w for w in not_in_btf if f"warning: {shown} is not in BTF" in w]) == 1, shown


def test_a_struct_first_laid_out_as_a_member_is_still_reported(tmp_path: Path) -> None:
    src, model = build(tmp_path, "macro.bpf.c")
    out = analyze(src, [], model, [])
    inner = event_map(out, "rb_inner").event_type
    outer = out.btf[event_map(out, "rb_outer").event_type]
    assert isinstance(outer, Struct) and outer.members[0].type == inner
    [warning] = [w for w in warnings(out) if "struct inner_ev is not in BTF" in w]
    assert "bpf_ringbuf_output() on map 'rb_inner'" in warning


# --- what cannot be inferred ----------------------------------------------------------------

def test_ambiguous_void_and_unused_maps_stay_untyped(tmp_path: Path) -> None:
    src, model = build(tmp_path, "unclear.bpf.c")
    out = analyze(src, [], model, [])
    for name in ("mixed", "opaque", "idle"):
        assert event_map(out, name).event_type is None, name
    assert out.btf is model.btf  # nothing inferred, nothing synthesised
    by_map = {name: [w for w in warnings(out) if f"map '{name}'" in w]
              for name in ("mixed", "opaque", "idle")}
    [mixed] = by_map["mixed"]
    assert "struct a_event" in mixed and "struct b_event" in mixed
    assert mixed.startswith("tests/source_snippets/unclear.bpf.c:18:3: warning:")
    [opaque] = by_map["opaque"]
    # the void * inside send_raw() is where the type is lost: point there
    assert opaque.startswith("tests/source_snippets/unclear.bpf.c:22:2: warning: cannot infer")
    assert "'void *'" in opaque
    [idle] = by_map["idle"]
    assert "cannot infer the event type of map 'idle'" in idle


def test_no_source_diagnostics(tmp_path: Path) -> None:
    _, model = build(tmp_path, "unclear.bpf.c")
    diags = no_source_diagnostics(model, "build/unclear.o")
    assert [d.file for d in diags] == ["build/unclear.o"] * 3
    assert all("generate from the C source" in d.message for d in diags)
    assert str(diags[0]).startswith("build/unclear.o: warning: map 'mixed'")


# --- layout: source against clang's BTF -----------------------------------------------------

@pytest.mark.parametrize("target", ["bpfel", "bpfeb"])
def test_synthesised_layout_equals_clangs_btf(tmp_path: Path, target: str) -> None:
    """Bitfields, anonymous members, nested arrays, enums, typedefs, qualifiers, pointers.

    Both byte orders, each parsed with its own -target."""
    src, model = build(tmp_path, "layout.bpf.c", "-DIN_BTF", target=target)
    in_btf = btf_id(model, "layout")
    spec, synth = synthesize(src, ["-DIN_BTF"], model.btf, "struct layout")
    assert synth >= len(model.btf)
    ours, theirs = spec[synth], model.btf[in_btf]
    assert isinstance(ours, Struct) and isinstance(theirs, Struct)
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in ours.members] == [
        (m.name, m.bit_offset, m.bitfield_size) for m in theirs.members]
    assert ours.size == theirs.size
    for a, b in zip(ours.members, theirs.members, strict=True):
        assert spec.sizeof(a.type) == model.btf.sizeof(b.type), a.name
        assert shape(spec, a.type) == shape(model.btf, b.type), a.name


def test_synthesised_struct_formats_like_the_btf_one(tmp_path: Path) -> None:
    """The formatter's ctypes model of the event type is the same either way."""
    from ebpf_gen.collect import collect
    from ebpf_gen.ctypes_fmt import Formatter

    src, plain = build(tmp_path, "layout.bpf.c")
    _, with_btf = build(tmp_path, "layout.bpf.c", "-DIN_BTF")
    formatted = []
    for model, flags in ((plain, []), (with_btf, ["-DIN_BTF"])):
        out = analyze(src, flags, model, [])
        col = collect(out)
        fmt = Formatter(out.btf, col.names, c_names=col.c_names)
        classes = {}
        for tid in col.order:
            t = out.btf[tid]
            decl = fmt.record(tid) if isinstance(t, (Struct, Union_)) else fmt.enum(tid)
            classes[col.names[tid]] = _without_ids(asdict(decl))
        formatted.append(classes)
    assert "Layout" in formatted[0]
    assert formatted[0] == formatted[1]


def _without_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in ("type_id", "doc")}
    if isinstance(value, (list, tuple)):
        return [_without_ids(v) for v in value]
    return value


# --- errors ---------------------------------------------------------------------------------

def test_parse_error_names_file_line_col(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bpf.c"
    bad.write_text("#include <linux/bpf.h>\n\nint f(void) { return undeclared_thing; }\n")
    with pytest.raises(SourceError) as err:
        parse(bad, [])
    assert str(err.value).startswith(f"{bad}:3:22: error: use of undeclared identifier")
    assert isinstance(err.value, GenError)


def test_missing_header_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "nohdr.bpf.c"
    bad.write_text('#include "nope.h"\n')
    with pytest.raises(SourceError, match=r"nohdr.bpf.c:1:10: error: 'nope.h' file not found"):
        parse(bad, [])
    with pytest.raises(SourceError, match="no such file"):
        parse(tmp_path / "absent.bpf.c", [])


def test_relative_include_paths_start_at_the_source_dir_like_the_compile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The product's compile runs in the source's directory, so `-I inc` means sub/inc when
    generating sub/probe.bpf.c; the parse must find the same header and name it as the user
    would from where ebpf-gen runs."""
    from ebpf_gen.compile import compile_bpf as product_compile

    (tmp_path / "sub" / "inc").mkdir(parents=True)
    (tmp_path / "sub" / "inc" / "ev.h").write_text("struct rel_ev { int a; long b; };\n")
    (tmp_path / "sub" / "probe.bpf.c").write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n#include \"ev.h\"\n"
        "struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); }"
        " rb SEC(\".maps\");\n"
        "SEC(\"tracepoint/syscalls/sys_enter_execve\")\n"
        "int p(void *ctx) { struct rel_ev e = {1, 2};"
        " bpf_ringbuf_output(&rb, &e, sizeof(e), 0); return 0; }\n"
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n")
    monkeypatch.chdir(tmp_path)
    src = Path("sub/probe.bpf.c")
    flags = ["-I", "inc", "-I/usr/include/x86_64-linux-gnu"]
    compiled = product_compile(src, tmp_path / "probe.o", target="bpfel", cflags=flags)
    out = analyze(src, flags, read_object(compiled.object), [])
    tid = event_map(out, "rb").event_type
    assert tid is not None and out.btf[tid].name == "rel_ev"
    assert out.source_types == {tid: "sub/inc/ev.h:1"}
    [warning] = warnings(out)
    assert warning.startswith("sub/inc/ev.h:1:8: warning: struct rel_ev is not in BTF")


def test_builtin_headers_are_found(tmp_path: Path) -> None:
    """libclang from the wheel has no stddef.h of its own; clang's is added."""
    src = tmp_path / "builtin.bpf.c"
    src.write_text("#include <stddef.h>\n#include <stdbool.h>\n"
                   "struct s { size_t n; bool ok; };\n")
    parse(src, [])


def test_without_clangs_builtin_headers_the_error_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No clang on PATH nor under /usr/lib/llvm-*: the real libclang parse fails, and says why."""
    from ebpf_gen.source import _clang

    monkeypatch.setattr(_clang, "system_clang", lambda cc="clang": _clang.SystemClang(None, 0))
    src = tmp_path / "builtin.bpf.c"
    src.write_text("#include <stddef.h>\nstruct s { size_t n; };\n")
    with pytest.raises(SourceError) as err:
        parse(src, [])
    assert str(err.value).startswith(f"{src}:1:10: error: 'stddef.h' file not found; clang's")
    assert "put the clang that compiles on PATH" in str(err.value)


def test_nothing_to_infer_skips_the_parse(tmp_path: Path) -> None:
    """Event maps already typed (--type-of) and --type names in BTF: the source is not read."""
    from dataclasses import replace

    _, model = build(tmp_path, "hello_buffer.bpf.c", "-DIN_BTF")
    data_t = btf_id(model, "data_t")
    typed = replace(model, maps=tuple(
        replace(m, event_type=data_t) if m.name == "output" else m for m in model.maps))
    absent = tmp_path / "absent.bpf.c"
    assert analyze(absent, [], typed, ["struct data_t"]) is typed
    with pytest.raises(SourceError, match="no such file"):
        analyze(absent, [], typed, ["struct not_anywhere"])
