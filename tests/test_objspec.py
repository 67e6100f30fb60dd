"""read_object() on real clang output, checked against what libbpf itself sees.

The oracle is the system libbpf.so.1: bpf_object__open_file() runs libbpf's own BTF
fix-up and map parsing (no root needed: nothing is loaded), and we read its results back
through ctypes. A disagreement in a map's type/sizes, a program's section or a variable's
fixed-up offset fails the test.
"""

from __future__ import annotations

import ctypes
import re
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ebpf_gen.elf import read_elf
from ebpf_gen.errors import BTFError, ElfError, GenError
from ebpf_gen.objspec import MAP_TYPES, read_object

from .conftest import compile_bpf
from .uapi import header_enum

CORPUS = Path(__file__).parent / "corpus"


class _Libbpf:
    def __init__(self) -> None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        vp, cp, u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32
        sigs: dict[str, tuple[object, list[object]]] = {
            "bpf_object__open_file": (vp, [cp, vp]),
            "bpf_object__close": (None, [vp]),
            "bpf_object__next_map": (vp, [vp, vp]),
            "bpf_object__next_program": (vp, [vp, vp]),
            "bpf_object__btf": (vp, [vp]),
            "bpf_map__name": (cp, [vp]),
            "bpf_map__type": (ctypes.c_int, [vp]),
            "bpf_map__key_size": (u32, [vp]),
            "bpf_map__value_size": (u32, [vp]),
            "bpf_map__max_entries": (u32, [vp]),
            "bpf_map__map_flags": (u32, [vp]),
            "bpf_map__inner_map": (vp, [vp]),
            "bpf_program__name": (cp, [vp]),
            "bpf_program__section_name": (cp, [vp]),
            "btf__find_by_name_kind": (ctypes.c_int, [vp, cp, u32]),
            "btf__type_by_id": (vp, [vp, u32]),
            "btf__name_by_offset": (cp, [vp, u32]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib

    def open(self, path: Path) -> int:
        obj = self.lib.bpf_object__open_file(str(path).encode(), None)
        assert obj, f"libbpf cannot open {path}: errno {ctypes.get_errno()}"
        return int(obj)

    def maps(self, obj: int) -> Iterator[int]:
        m = self.lib.bpf_object__next_map(obj, None)
        while m:
            yield m
            m = self.lib.bpf_object__next_map(obj, m)

    def programs(self, obj: int) -> list[tuple[str, str]]:
        out = []
        p = self.lib.bpf_object__next_program(obj, None)
        while p:
            out.append((self.lib.bpf_program__name(p).decode(),
                        self.lib.bpf_program__section_name(p).decode()))
            p = self.lib.bpf_object__next_program(obj, p)
        return out

    def datasec(self, obj: int, name: str) -> tuple[int, dict[str, int]]:
        """(size, {var: offset}) of a DATASEC after libbpf's fix-up."""
        btf = self.lib.bpf_object__btf(obj)
        tid = self.lib.btf__find_by_name_kind(btf, name.encode(), 15)
        assert tid > 0, name
        t = self.lib.btf__type_by_id(btf, tid)
        _, info, size = struct.unpack("<III", ctypes.string_at(t, 12))
        out = {}
        for i in range(info & 0xFFFF):
            vtype, off, _ = struct.unpack("<III", ctypes.string_at(t + 12 + 12 * i, 12))
            var = self.lib.btf__type_by_id(btf, vtype)
            name_off, _, _ = struct.unpack("<III", ctypes.string_at(var, 12))
            linkage = struct.unpack("<I", ctypes.string_at(var + 12, 4))[0]
            if linkage == 1:  # global (libbpf turned hidden ones static)
                out[self.lib.btf__name_by_offset(btf, name_off).decode()] = off
        return size, out


@pytest.fixture(scope="module")
def libbpf() -> _Libbpf:
    return _Libbpf()


@pytest.fixture(scope="module", params=["bpfel", "bpfeb"])
def corpus_obj(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("objspec") / f"maps_vars_{request.param}.o"
    return compile_bpf(CORPUS / "maps_vars.bpf.c", out, target=request.param)


@pytest.fixture(scope="module")
def le_obj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # libbpf refuses objects of the other byte order than the host's, so the libbpf oracle
    # sees only bpfel; bpfeb is compared with bpfel in the generate tests
    out = tmp_path_factory.mktemp("objspec_le") / "maps_vars.o"
    return compile_bpf(CORPUS / "maps_vars.bpf.c", out, target="bpfel")


def test_maps_match_libbpf(le_obj: Path, libbpf: _Libbpf) -> None:
    model = read_object(le_obj)
    obj = libbpf.open(le_obj)
    try:
        lib = libbpf.lib
        seen = {}
        for m in libbpf.maps(obj):
            name = lib.bpf_map__name(m).decode()
            if name.startswith((".", "maps_var")) or "." in name:
                continue  # internal maps of .data/.bss/.rodata
            inner = lib.bpf_map__inner_map(m)
            key_size, value_size = lib.bpf_map__key_size(m), lib.bpf_map__value_size(m)
            if lib.bpf_map__type(m) == 4:
                # libbpf fills in perf event arrays' 4-byte key/value when it creates the
                # map (bpf_object__create_map); the model states the created map's sizes
                key_size, value_size = key_size or 4, value_size or 4
            seen[name] = (
                lib.bpf_map__type(m), key_size, value_size,
                lib.bpf_map__max_entries(m), lib.bpf_map__map_flags(m),
                (lib.bpf_map__type(inner), lib.bpf_map__key_size(inner),
                 lib.bpf_map__value_size(inner), lib.bpf_map__max_entries(inner))
                if inner else None,
            )
    finally:
        libbpf.lib.bpf_object__close(obj)
    ours = {
        m.name: (
            m.map_type, m.key_size, m.value_size, m.max_entries, m.flags,
            (m.inner.map_type, m.inner.key_size, m.inner.value_size, m.inner.max_entries)
            if m.inner else None,
        )
        for m in model.maps
    }
    assert ours == seen
    assert len(ours) == 11


def test_map_details(corpus_obj: Path) -> None:
    model = read_object(corpus_obj)
    maps = {m.name: m for m in model.maps}
    spec = model.btf
    assert maps["by_pid"].map_type_name == "HASH" and maps["by_pid"].flags == 1
    value = maps["by_pid"].value_type
    assert value is not None and spec.resolve(value).name == "rec"
    assert maps["sized_lru"].key_type is None and maps["sized_lru"].key_size == 8
    assert maps["pinned"].pinning == 1
    assert maps["jumps"].map_type_name == "PROG_ARRAY" and maps["jumps"].inner is None
    inner = maps["outer_hash"].inner
    assert inner is not None and inner.name == "outer_hash.inner"
    assert inner.map_type_name == "ARRAY" and inner.value_size == 2
    assert maps["events"].map_type_name == "PERF_EVENT_ARRAY"
    assert maps["ring"].map_type_name == "RINGBUF" and maps["ring"].max_entries == 4096
    assert {maps[n].map_type_name for n in ("pc_hash", "pc_array")} == {
        "PERCPU_HASH", "PERCPU_ARRAY"}


def test_programs(corpus_obj: Path) -> None:
    model = read_object(corpus_obj)
    ours = [(p.name, p.section) for p in model.programs]
    assert ("on_enter", "raw_tracepoint/sys_enter") in ours
    assert ("tail", "ksyscall/execve") in ours
    assert "global_sub" not in dict(ours) and "helper" not in dict(ours)  # .text subprograms


def test_programs_match_libbpf(le_obj: Path, libbpf: _Libbpf) -> None:
    ours = [(p.name, p.section) for p in read_object(le_obj).programs]
    obj = libbpf.open(le_obj)
    try:
        assert sorted(ours) == sorted(libbpf.programs(obj))
    finally:
        libbpf.lib.bpf_object__close(obj)


def _by_section(path: Path) -> dict[str, dict[str, int]]:
    by_sec: dict[str, dict[str, int]] = {}
    for v in read_object(path).variables:
        by_sec.setdefault(v.section, {})[v.name] = v.offset
    return by_sec


def test_variables(corpus_obj: Path) -> None:
    model = read_object(corpus_obj)
    by_sec: dict[str, dict[str, int]] = {}
    for v in model.variables:
        by_sec.setdefault(v.section, {})[v.name] = v.offset
    assert set(by_sec) == {".bss", ".data", ".data.custom", ".rodata", ".rodata.custom"}
    names = {v.name for v in model.variables}
    assert "hidden_global" not in names and "hidden_static" not in names
    assert {"hits", "more_bss", "ready", "tag", "min_pid", "greeting", "custom_a",
            "custom_b", "ro_custom"} <= names
    assert by_sec[".data.custom"]["custom_b"] == 8
    sizes = {v.name: v.size for v in model.variables}
    assert sizes["greeting"] == 7 and sizes["more_bss"] == 12
    assert model.variables[[v.name for v in model.variables].index("ready")].readonly is False
    assert all(v.readonly for v in model.variables if v.section.startswith(".rodata"))


def test_variables_match_libbpf_fixup(le_obj: Path, libbpf: _Libbpf) -> None:
    model = read_object(le_obj)
    obj = libbpf.open(le_obj)
    try:
        for sec, ours in _by_section(le_obj).items():
            size, theirs = libbpf.datasec(obj, sec)
            assert ours == theirs, sec
            datasec = model.btf.named(sec)[0]
            assert datasec.size == size  # type: ignore[union-attr]
    finally:
        libbpf.lib.bpf_object__close(obj)


def test_variable_offsets_match_symbol_table(corpus_obj: Path) -> None:
    # a second, independent oracle (works for bpfeb too): llvm-objdump's symbol table
    out = subprocess.run(["llvm-objdump", "-t", str(corpus_obj)], capture_output=True,
                         text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        m = re.match(r"([0-9a-f]{16}) g\s+O (\S+)\s+([0-9a-f]{16}) (\S+)$", line)
        if m:
            table[m[4]] = (m[2], int(m[1], 16), int(m[3], 16))
    for v in read_object(corpus_obj).variables:
        assert table[v.name] == (v.section, v.offset, v.size)


def test_map_type_table_matches_uapi_header() -> None:
    # by value: each of our names is one the header gives that value (renames keep aliases),
    # and every map type the header knows has a name here
    header = header_enum("linux/bpf.h", "bpf_map_type", "BPF_MAP_TYPE_")
    for value, names in header.items():
        assert MAP_TYPES.get(value) in names, (value, sorted(names))


def test_rejects_non_elf(tmp_path: Path) -> None:
    p = tmp_path / "x.o"
    p.write_text("int main;")
    with pytest.raises(ElfError, match=rf"^{re.escape(str(p))}: not an ELF file"):
        read_object(p)


def test_rejects_host_object(tmp_path: Path) -> None:
    src = tmp_path / "h.c"
    src.write_text("int x = 1;\n")
    subprocess.run(["gcc", "-g", "-c", str(src), "-o", str(tmp_path / "h.o")], check=True)
    with pytest.raises(ElfError, match="not a BPF object"):
        read_object(tmp_path / "h.o")


def test_rejects_missing_btf(tmp_path: Path) -> None:
    src = tmp_path / "n.c"
    src.write_text("int x = 1;\n")
    subprocess.run(["clang", "-O2", "-target", "bpfel", "-c", str(src), "-o",
                    str(tmp_path / "n.o")], check=True)
    with pytest.raises(BTFError, match=r"no \.BTF section"):
        read_object(tmp_path / "n.o")


def _patch_btf(obj: Path, out: Path, edit: object) -> Path:
    data = bytearray(obj.read_bytes())
    elf = read_elf(obj)
    start = bytes(data).index(elf.btf)
    edit(data, start, len(elf.btf))  # type: ignore[operator]
    out.write_bytes(bytes(data))
    return out


def test_rejects_btf_magic_of_the_other_byte_order(corpus_obj: Path, tmp_path: Path) -> None:
    def swap(data: bytearray, start: int, _n: int) -> None:
        data[start], data[start + 1] = data[start + 1], data[start]

    bad = _patch_btf(corpus_obj, tmp_path / "swapped.o", swap)
    with pytest.raises(BTFError, match="disagrees with the ELF header"):
        read_object(bad)


def test_rejects_malformed_btf(corpus_obj: Path, tmp_path: Path) -> None:
    def clobber(data: bytearray, start: int, n: int) -> None:
        order = "little" if data[5] == 1 else "big"
        # type_len (header offset 12) far past the section
        data[start + 12 : start + 16] = (n * 4).to_bytes(4, order)

    bad = _patch_btf(corpus_obj, tmp_path / "bad.o", clobber)
    with pytest.raises(GenError) as exc:
        read_object(bad)
    assert str(exc.value).startswith(str(bad))


def test_rejects_truncated_elf(corpus_obj: Path, tmp_path: Path) -> None:
    bad = tmp_path / "trunc.o"
    bad.write_bytes(corpus_obj.read_bytes()[:200])
    with pytest.raises(ElfError, match=rf"^{re.escape(str(bad))}: "):
        read_object(bad)
