"""gen/ebpf_gen/compile.py against the real clang: flags, reproducibility, and failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ebpf_gen.compile import clang_command, compile_bpf, parse_depfile
from ebpf_gen.errors import CompileError

INC = "-I/usr/include/x86_64-linux-gnu"
SRC = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "local.h"
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, struct rec); } recs SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_execve")
int probe(void *ctx) { __u32 k = 0; struct rec *r = bpf_map_lookup_elem(&recs, &k);
                       if (r) r->n++; return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


def _tree(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "probe.bpf.c").write_text(SRC)
    (root / "src" / "local.h").write_text("struct rec { __u64 n; };\n")
    return root / "src" / "probe.bpf.c"


def test_default_flags(tmp_path: Path) -> None:
    src = tmp_path / "p.bpf.c"
    cmd = clang_command(src, tmp_path / "p.o", tmp_path / "p.d", target="bpfeb", cc="clang",
                        cflags=["-DX=1"])
    assert cmd[0] == "clang"
    for flag in ("-O2", "-g", "-D__TARGET_ARCH_x86", "-fno-ident", "-MD"):
        assert flag in cmd
    assert cmd[cmd.index("-target") + 1] == "bpfeb"
    assert f"-fdebug-prefix-map={tmp_path.resolve()}=." in cmd
    assert cmd[cmd.index("-fdebug-compilation-dir") + 1] == "."
    assert cmd.index("-DX=1") > cmd.index("-c")  # user flags come after ours and can override


def test_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="unknown target"):
        clang_command(tmp_path / "p.c", tmp_path / "o", tmp_path / "d", target="x86",
                      cc="clang", cflags=[])


@pytest.mark.parametrize("target", ["bpfel", "bpfeb"])
def test_reproducible_across_checkout_paths(tmp_path: Path, clang: str, target: str) -> None:
    a = _tree(tmp_path / "one")
    b = _tree(tmp_path / "two" / "deeper" / "checkout")
    oa = compile_bpf(a, tmp_path / "a.o", target=target, cflags=[INC])
    ob = compile_bpf(b, tmp_path / "b.o", target=target, cflags=[INC])
    da, db = oa.object.read_bytes(), ob.object.read_bytes()
    assert da == db
    assert b"one" not in da and str(tmp_path).encode() not in da
    # the local header is a recorded input; the depfile itself is cleaned up
    assert a.parent.resolve() / "local.h" in oa.inputs
    assert oa.inputs[0] == a.resolve()
    assert not list(tmp_path.glob("*.d"))


def test_strip_removes_dwarf_keeps_btf(tmp_path: Path, clang: str) -> None:
    from elftools.elf.elffile import ELFFile

    src = _tree(tmp_path)
    stripped = compile_bpf(src, tmp_path / "s.o", target="bpfel", cflags=[INC]).object
    full = compile_bpf(src, tmp_path / "f.o", target="bpfel", strip=None, cflags=[INC]).object
    with open(stripped, "rb") as f:
        names = {s.name for s in ELFFile(f).iter_sections()}
    assert ".BTF" in names and ".BTF.ext" in names
    assert not any(n.startswith(".debug") for n in names)
    with open(full, "rb") as f:
        assert any(s.name.startswith(".debug_info") for s in ELFFile(f).iter_sections())


def test_clang_failure_carries_command_and_diagnostic(tmp_path: Path, clang: str) -> None:
    src = tmp_path / "bad.bpf.c"
    src.write_text("int f(void) { return undefined_thing; }\n")
    with pytest.raises(CompileError) as exc:
        compile_bpf(src, tmp_path / "bad.o", target="bpfel")
    text = str(exc.value)
    assert text.startswith(f"{src}: clang failed (exit 1): clang -O2")
    assert "use of undeclared identifier 'undefined_thing'" in text
    assert "bad.bpf.c:1:" in text


def test_missing_clang(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    with pytest.raises(CompileError, match=r"/nonexistent/clang: command not found"):
        compile_bpf(src, tmp_path / "x.o", target="bpfel", cc="/nonexistent/clang")


def test_missing_strip(tmp_path: Path, clang: str) -> None:
    src = _tree(tmp_path)
    with pytest.raises(CompileError, match="no-such-strip: command not found"):
        compile_bpf(src, tmp_path / "x.o", target="bpfel", strip="no-such-strip", cflags=[INC])


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="no such source file"):
        compile_bpf(tmp_path / "nope.c", tmp_path / "x.o", target="bpfel")


def test_parse_depfile() -> None:
    text = "out.o: /a/b.c /usr/include/x.h \\\n  /p/with\\ space.h \\\n /usr/include/x.h\n"
    assert parse_depfile(text) == (Path("/a/b.c"), Path("/usr/include/x.h"),
                                   Path("/p/with space.h"))
    assert parse_depfile("") == ()


def test_llvm_strip_present() -> None:
    # the default strip tool must exist wherever the tests (and CI) run
    assert shutil.which("llvm-strip"), "llvm-strip missing: install llvm (scripts/setup.sh)"
