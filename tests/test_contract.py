"""The one contract between generator and runtime (gen/ebpf_gen/runtime/spec.py), end to end.

The generator reads the map kinds, the handle per kind and the names a module may import
from ``ebpf_gen.runtime.spec``; these tests render real clang output against that table and
import the result, so a kind, handle or name the two sides disagree on fails here.
"""

from __future__ import annotations

import ctypes
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import ebpf_gen.runtime as rt
from ebpf_gen.runtime.maps import map_class
from ebpf_gen.runtime.spec import HANDLES, MODULE_IMPORTS, MapKind, handle_for

from tests.conftest import require_tool
from tests.test_corpus import CORPUS, _generate
from tests.test_corpus import vmlinux_h as vmlinux_header

REPO = Path(__file__).resolve().parent.parent


def _module(tmp_path: Path, name: str, source: str, *args: str) -> tuple[ModuleType, str]:
    """clang + the real pipeline (ebpf_gen.generate) + import, from BPF C text."""
    from ebpf_gen.generate import Options, build_from_source

    require_tool("clang")
    src = tmp_path / f"{name}.bpf.c"
    src.write_text(source)
    opts = Options(stem=name, targets=("bpfel",), cflags=("-I/usr/include/x86_64-linux-gnu",),
                   all_types="--all-types" in args)
    result = build_from_source(src, opts)
    for fname, data in result.files.items():
        (tmp_path / fname).write_bytes(data)
    text = result.files[f"{name}.py"].decode()
    spec = importlib.util.spec_from_file_location(f"_contract_{name}", tmp_path / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module, text


def test_runtime_exports_every_module_import() -> None:
    for name in sorted(MODULE_IMPORTS):
        assert name in rt.__all__, name
        assert getattr(rt, name) is not None


def test_every_handle_class_exists_with_its_arity() -> None:
    for kind in MapKind:
        handle = handle_for(kind)
        cls = map_class(kind)
        assert cls.__name__ == handle.name, kind
        assert cls is getattr(rt, handle.name)


_HEAD = """#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
"""


def _map(kind: MapKind) -> str:
    # The generator reads only BTF, so every kind compiles and renders whatever the kernel
    # would say about the combination; numbers, since old uapi headers lack new kinds.
    if kind in (MapKind.ARRAY_OF_MAPS, MapKind.HASH_OF_MAPS):
        return (f"struct {{ __uint(type, {int(kind)}); __uint(max_entries, 1); "
                f"__type(key, __u32); __array(values, struct inner); }} m_{kind.name.lower()} "
                'SEC(".maps");\n')
    return (f"struct {{ __uint(type, {int(kind)}); __uint(max_entries, 1); __type(key, __u32); "
            f'__type(value, __u64); }} m_{kind.name.lower()} SEC(".maps");\n')


def test_module_with_every_map_kind_imports(tmp_path: Path) -> None:
    source = _HEAD + ('struct inner { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 2); '
                      "__type(key, __u32); __type(value, __u32); };\n")
    source += "".join(_map(k) for k in MapKind if k != MapKind.UNSPEC)
    module, _ = _module(tmp_path, "every_kind", source)
    annotations = module.Maps.__annotations__
    for kind in MapKind:
        if kind == MapKind.UNSPEC:
            continue
        ann = annotations[f"m_{kind.name.lower()}"]
        handle = handle_for(kind)
        assert ann.split("[")[0] == handle.name, (kind, ann)
        if handle.params:
            assert ann.startswith(handle.name + "["), (kind, ann)
        else:
            assert ann == handle.name, (kind, ann)
        spec = next(m for m in module.OBJECT.maps if m.name == f"m_{kind.name.lower()}")
        assert spec.kind is MapKind.UNSPEC  # not restated: libbpf's, read at load
    assert annotations["m_array_of_maps"] == "MapOfMaps[int, HashMap[int, int]]"
    assert set(HANDLES) <= set(MapKind)


def test_struct_named_like_a_runtime_import_does_not_shadow_it(tmp_path: Path) -> None:
    source = _HEAD + """
struct map_of_maps { __u32 a; };
struct hash_map { __u64 b; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1);
         __type(key, struct map_of_maps); __type(value, struct hash_map); } m SEC(".maps");
struct inner { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
               __type(key, __u32); __type(value, __u32); };
struct { __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS); __uint(max_entries, 1);
         __type(key, __u32); __array(values, struct inner); } outer SEC(".maps");
"""
    module, text = _module(tmp_path, "shadow", source)
    assert module.MapOfMaps is rt.MapOfMaps and module.HashMap is rt.HashMap
    assert module.C_TYPES["struct map_of_maps"].__name__ == "MapOfMaps_"
    assert module.C_TYPES["struct hash_map"].__name__ == "HashMap_"
    assert "m: HashMap[MapOfMaps_, HashMap_]" in text
    assert "outer: MapOfMaps[int, ArrayMap[int, int]]" in text


def test_all_types_of_empty_structs_imports_ctypes(tmp_path: Path) -> None:
    source = _HEAD + """
struct empty_a {};
struct empty_b {};
SEC("raw_tracepoint/sys_enter")
int prog(struct empty_a *a) { return 0; }
struct empty_b *anchor __attribute__((unused));
"""
    module, text = _module(tmp_path, "empties", source, "--all-types")
    assert "import ctypes\n" in text
    assert ctypes.sizeof(module.EmptyA) == 0


def test_double_underscore_members_keep_their_names(tmp_path: Path) -> None:
    source = _HEAD + """
struct reserved {
    __u32 __state;
    __u64 __mce_whole_page : 1, __mce_reserved : 63;
    __u8 tail : 3, __low : 5;
};
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
         __type(value, struct reserved); } m SEC(".maps");
"""
    module, _ = _module(tmp_path, "reserved", source)
    r = module.Reserved()
    r.__state = 7
    r.__mce_reserved = (1 << 63) - 1
    r.__low = 31
    assert (r.__state, r.__mce_reserved, r.__mce_whole_page, r.__low, r.tail) == (
        7, (1 << 63) - 1, 0, 31, 0)


vmlinux_h = vmlinux_header  # the session fixture of test_corpus, shared


def test_double_underscore_members_of_kernel_structs(tmp_path: Path, vmlinux_h: Path) -> None:
    """task_struct.__state (a field) and perf_event_attr.__reserved_1 (a 26-bit bitfield)."""
    out = tmp_path / "out"
    proc = _generate(CORPUS / "core_task.bpf.c", out, "kt", "bpfel",
                     ["--type", "task_struct", "--type", "perf_event_attr"], vmlinux_h)
    assert proc.returncode == 0, proc.stderr
    code = ("import kt; t = kt.TaskStruct(); t.__state = 0x402; print(t.__state); "
            "a = kt.PerfEventAttr(); a.__reserved_1 = (1 << 26) - 1; print(a.__reserved_1, "
            "a.sample_id_all)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=out, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1026", str((1 << 26) - 1), "0"]


def test_btf_anchor_is_not_a_variable(tmp_path: Path) -> None:
    # the global the missing-struct warning recommends exists only to put the struct in BTF
    source = _HEAD + """
struct event { __u32 pid; };
struct event *unused_event __attribute__((unused));
__u64 unused_but_real = 0;
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
"""
    module, text = _module(tmp_path, "anchor", source, "--all-types")
    assert "unused_event" not in text
    assert [v.name for v in module.OBJECT.variables] == ["unused_but_real"]
    assert module.Event(pid=3)._asdict() == {"pid": 3}


def test_int128_members_read_as_int(tmp_path: Path) -> None:
    source = _HEAD + """
struct wide { unsigned __int128 u; __int128 s; };
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1); __type(key, __u32);
         __type(value, struct wide); } m SEC(".maps");
"""
    module, text = _module(tmp_path, "wide", source)
    w = module.Wide()
    w.u, w.s = (1 << 128) - 1, -(1 << 127)
    assert (w.u, w.s) == ((1 << 128) - 1, -(1 << 127))
    assert bytes(w) == b"\xff" * 16 + b"\x00" * 15 + b"\x80"
    assert "u: int" in text and "s: int" in text
    assert repr(module.Wide()) == "Wide(u=0, s=0)"


def test_map_of_maps_without_template_imports_map(tmp_path: Path) -> None:
    source = _HEAD + """
struct { __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u32); } outer SEC(".maps");
"""
    module, text = _module(tmp_path, "untemplated", source)
    assert "outer: MapOfMaps[int, Map] = " in text
    assert module.Map is rt.Map
