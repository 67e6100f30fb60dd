"""A user's own project outside this checkout: their layout, their headers, their flags.

Each test builds a project in a temporary directory (never below the repository, whose
pyproject.toml must not leak in) and runs the real ``ebpf-gen`` command there, as a user
would: compile with the system clang, read what it printed, look at what it wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# A vmlinux.h stand-in beside the source: the file name and the quote include are what the
# cache bug was about, not the size (the real header is compiled in test_vmlinux.py)
VMLINUX_H = """\
#ifndef __VMLINUX_H__
#define __VMLINUX_H__
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
enum bpf_map_type { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_RINGBUF = 27 };
#endif
"""

PROBE = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "myhelpers.h"
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 8);
         __type(key, __u32); __type(value, __u64); } counts SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_execve")
int probe(void *ctx) { __u32 k = 0; __u64 v = bump(1); bpf_map_update_elem(&counts, &k, &v, 0);
    return 0; }
char LICENSE[] SEC("license") = "GPL";
"""

PYPROJECT = """\
[project]
name = "mytool"
version = "0.1"

[tool.ebpf-gen]
output-dir = "mytool/bpf"
cflags = ["-Iinclude"]

[[tool.ebpf-gen.source]]
path = "bpf/probe.bpf.c"
"""


def ebpf_gen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ebpf_gen.cli", *args],
        cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    assert not tmp_path.is_relative_to(REPO)
    root = tmp_path / "mytool"
    (root / "bpf").mkdir(parents=True)
    (root / "include").mkdir()
    (root / "bpf" / "vmlinux.h").write_text(VMLINUX_H)
    (root / "bpf" / "probe.bpf.c").write_text(PROBE)
    (root / "include" / "myhelpers.h").write_text(
        "static __always_inline __u64 bump(__u64 x) { return x + 1; }\n")
    (root / "pyproject.toml").write_text(PYPROJECT)
    return root


def test_cache_hits_with_vmlinux_h_beside_the_source(project: Path) -> None:
    first = ebpf_gen("generate", cwd=project)
    assert first.returncode == 0, first.stderr
    assert first.stdout == ("bpf/probe.bpf.c: wrote mytool/bpf/probe_bpfel.o, "
                            "mytool/bpf/probe_bpfeb.o, mytool/bpf/probe.py\n")
    entry = json.loads((project / ".ebpf-gen-cache" / "probe.json").read_text())
    # every header as clang resolved it, the quote include beside the source among them
    assert {Path(p).resolve() for p in entry["inputs"]} >= {
        project / "bpf" / "vmlinux.h", project / "include" / "myhelpers.h"}

    second = ebpf_gen("generate", cwd=project / "bpf")  # from a subdirectory, too
    assert second.returncode == 0, second.stderr
    assert second.stdout == "bpf/probe.bpf.c: up to date (inputs unchanged; --force regenerates)\n"

    # the header beside the source is an input: changing it regenerates
    (project / "bpf" / "vmlinux.h").write_text(VMLINUX_H + "struct extra { int x; };\n")
    third = ebpf_gen("generate", cwd=project)
    assert third.returncode == 0, third.stderr
    assert third.stdout.startswith("bpf/probe.bpf.c: unchanged")  # same outputs, recompiled

    quiet = ebpf_gen("generate", "-q", "--force", cwd=project)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_relative_include_from_the_current_directory(project: Path) -> None:
    (project / "pyproject.toml").unlink()  # no config: the flag alone must do
    proc = ebpf_gen("bpf/probe.bpf.c", "--", "-Iinclude", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert (project / "generated" / "probe.py").is_file()
    # from elsewhere, the same flag means another directory: clang says what it missed
    proc = ebpf_gen("mytool/bpf/probe.bpf.c", "--", "-Iinclude", cwd=project.parent)
    assert proc.returncode == 2
    assert "'myhelpers.h' file not found" in proc.stderr


def test_config_cflags_start_at_pyproject_and_the_cli_says_it_applies_them(
        project: Path) -> None:
    proc = ebpf_gen("-v", "bpf/probe.bpf.c", "--", "-Iinclude", cwd=project)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "ebpf-gen: cflags from pyproject.toml: -Iinclude (--no-config ignores them)" in lines
    # given twice (config and command line), passed once
    assert "ebpf-gen: clang flags: -Iinclude" in lines
    assert "ebpf-gen: input: include/myhelpers.h" in lines

    # from the source's directory the config's -Iinclude still means <project>/include
    proc = ebpf_gen("probe.bpf.c", "--output-dir", "out", cwd=project / "bpf")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "ebpf-gen: cflags from ../pyproject.toml: -Iinclude (--no-config " \
        "ignores them)\n"

    proc = ebpf_gen("--no-config", "probe.bpf.c", cwd=project / "bpf")
    assert proc.returncode == 2 and "'myhelpers.h' file not found" in proc.stderr


def test_clang_warnings_are_shown_on_success(project: Path) -> None:
    src = project / "bpf" / "probe.bpf.c"
    src.write_text(PROBE.replace("__u32 k = 0;", "__u32 k = 0; int unused;"))
    # as clang prints them, once (not once per byte order)
    proc = ebpf_gen("bpf/probe.bpf.c", "--", "-Wall", cwd=project)
    assert proc.returncode == 0, proc.stderr
    col = PROBE.splitlines()[6].index("__u32 k = 0;") + len("__u32 k = 0; int ") + 1
    assert f"{src}:7:{col}: warning: unused variable 'unused' [-Wunused-variable]" in proc.stderr
    assert proc.stderr.count("warning: unused variable") == 1
    assert "1 warning generated." in proc.stderr


def test_version(project: Path) -> None:
    from ebpf_gen import __version__

    for args in (["--version"], ["generate", "--version"]):
        proc = ebpf_gen(*args, cwd=project)
        assert proc.returncode == 0
        assert proc.stdout == f"ebpf-gen {__version__}\n"


def test_linux_bpf_h_with_no_flags(tmp_path: Path) -> None:
    """asm/types.h lives in the multiarch dir, found from the compiler, not from a flag."""
    (tmp_path / "plain.bpf.c").write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        "struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);"
        " __type(key, __u32); __type(value, __u64); } hits SEC(\".maps\");\n"
        "SEC(\"tracepoint/syscalls/sys_enter_execve\")\n"
        "int plain(void *ctx) { __u32 k = 0; __u64 *v = bpf_map_lookup_elem(&hits, &k);"
        " if (v) __sync_fetch_and_add(v, 1); return 0; }\n"
        "char LICENSE[] SEC(\"license\") = \"GPL\";\n")
    proc = ebpf_gen("-v", "plain.bpf.c", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    inputs = [ln for ln in proc.stderr.splitlines() if ln.startswith("ebpf-gen: input: ")]
    assert any(ln.endswith("-linux-gnu/asm/types.h") for ln in inputs), inputs
    assert "hits: ArrayMap[int, int]" in (tmp_path / "generated" / "plain.py").read_text()
