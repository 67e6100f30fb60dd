"""Maps and programs whose C names are not Python attributes, from BTF to ``objs.maps.<attr>``.

The generator decides each attribute (gen/ebpf_gen/naming.py) and writes it into the spec as
``attr``; the runtime sets the handle there without re-deriving the rule. Covered: Python
keywords and builtins (``class``, ``print``) straight from clang, and names that are not
identifiers at all (``dot.map``), which C cannot spell: the test renames symbols in a
compiled object's string tables, as a hand-made or other-language object could name them.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.elf import read_elf
from ebpf_gen.runtime import MapKind, MapSpec, ProgramSpec

from .conftest import compile_bpf, require_tool

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 me = 0;

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u64); } class SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u64); } dot_map SEC(".maps");

static void bump(void *map)
{
    __u32 k = 0;
    __u64 *v = bpf_map_lookup_elem(map, &k);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int print(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) == me)
        bump(&class);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int dot_prog(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) == me)
        bump(&dot_map);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

# Same length, so every string offset in BTF and the ELF symbol table stays valid
RENAMES = {"dot_map": "dot.map", "dot_prog": "dot.prog"}


def _rename(data: bytes) -> bytes:
    for old, new in RENAMES.items():
        needle = b"\0" + old.encode() + b"\0"
        assert data.count(needle) >= 1, old
        data = data.replace(needle, b"\0" + new.encode() + b"\0")
    return data


@pytest.fixture(scope="module")
def names_module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The skeleton generated (``ebpf-gen --object``) from the renamed object, imported."""
    require_tool("clang")
    root = tmp_path_factory.mktemp("names")
    src = root / "names.bpf.c"
    src.write_text(SOURCE)
    obj = compile_bpf(src, root / "compiled.o")
    renamed = root / "names.o"
    renamed.write_bytes(_rename(obj.read_bytes()))
    out = root / "pkg"
    cmd = [sys.executable, "-m", "ebpf_gen.cli", "--object", str(renamed), "--stem", "names",
           "--output-dir", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}"
    name = f"_names_{os.getpid()}"
    spec = importlib.util.spec_from_file_location(name, out / "names.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_object_really_has_the_odd_names(tmp_path: Path) -> None:
    require_tool("clang")
    src = tmp_path / "n.bpf.c"
    src.write_text(SOURCE)
    renamed = tmp_path / "renamed.o"
    renamed.write_bytes(_rename(compile_bpf(src, tmp_path / "n.o").read_bytes()))
    elf = read_elf(renamed)
    names = {s.name for s in elf.symbols}
    assert {"dot.map", "dot.prog", "class", "print"} <= names
    assert not {"dot_map", "dot_prog"} & names


def test_specs_carry_the_attribute_the_classes_declare(names_module: ModuleType) -> None:
    maps = {m.name: m for m in names_module.OBJECT.maps}
    programs = {p.name: p for p in names_module.OBJECT.programs}
    assert {n: m.attr for n, m in maps.items()} == {"class": "class_", "dot.map": "dot_map"}
    assert {n: p.attr for n, p in programs.items()} == {"print": "print_", "dot.prog": "dot_prog"}
    assert set(names_module.Maps.__annotations__) == {m.attribute for m in maps.values()}
    assert set(names_module.Programs.__annotations__) == {p.attribute for p in programs.values()}


def test_attr_is_written_only_where_it_differs() -> None:
    repo = Path(__file__).resolve().parent.parent
    text = (repo / "generated" / "hello_map.py").read_text()
    assert "map_spec(" in text and "attr=" not in text


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: MapSpec("print", MapKind.HASH, max_entries=4, **kw),
        lambda **kw: ProgramSpec("print", "tracepoint/x/y", **kw),
    ],
    ids=["MapSpec", "ProgramSpec"],
)
def test_spec_attr_value_semantics(make: Callable[..., Any]) -> None:
    plain, same, escaped = make(), make(attr="print"), make(attr="print_")
    assert plain == same and hash(plain) == hash(same)  # attr equal to the name is no attr
    assert same.attr is None and plain.attribute == "print"
    assert escaped != plain and escaped.attribute == "print_"
    assert "attr='print_'" in repr(escaped)
    assert escaped.replace(attr=None) == plain
    assert plain.replace(attr="print_") == escaped
    assert pickle.loads(pickle.dumps(escaped)) == escaped
    with pytest.raises(AttributeError):
        escaped.attr = "x"


@pytest.mark.kernel
def test_handles_sit_on_the_generated_attributes(names_module: ModuleType) -> None:
    with names_module.load({"me": os.getpid()}) as objs:
        assert objs.maps.class_[0] == 0 and objs.maps.dot_map[0] == 0
        assert objs.programs.print_.name == "print"
        assert objs.programs.dot_prog.name == "dot.prog"
        objs.programs.print_.attach()
        objs.programs.dot_prog.attach()
        os.getppid()
        assert objs.maps.class_[0] == 1  # written by program 'print' into map 'class'
        assert objs.maps.dot_map[0] == 1  # by 'dot.prog' into 'dot.map'
        assert objs.maps.dot_map.spec.name == "dot.map"
        assert not hasattr(objs.maps, "class") and not hasattr(objs.maps, "dot.map")
