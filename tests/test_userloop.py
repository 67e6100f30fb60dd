"""A user's own project outside this checkout: their layout, their headers, their flags.

Each test builds a project in a temporary directory (never below the repository, whose
pyproject.toml must not leak in) and runs the real ``ebpf-gen`` command there, as a user
would: compile with the system clang, read what it printed, look at what it wrote.
"""

from __future__ import annotations

import json
import re
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


def test_multiarch_dir_from_the_filesystem_is_the_compilers(clang: str) -> None:
    """The shortcut that spares a compiler start names the directory the compilers would."""
    from ebpf_gen.compile import compilers_multiarch_flags, multiarch_include_flags

    asked = compilers_multiarch_flags(clang)
    assert asked[:1] == ("-idirafter",) and asked[1].endswith("-linux-gnu"), asked
    assert multiarch_include_flags.__wrapped__(clang) == asked


@pytest.fixture(scope="session")
def vmlinux_h(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The running kernel's vmlinux.h, as every libbpf-tools checkout makes it (bpftool)."""
    import shutil

    from .conftest import need

    btf = Path("/sys/kernel/btf/vmlinux")
    need(None if btf.is_file() else "no /sys/kernel/btf/vmlinux (kernel without BTF)")
    need(None if shutil.which("bpftool") else "bpftool not installed")
    out = tmp_path_factory.mktemp("vmlinux") / "vmlinux.h"
    with open(out, "w") as f:
        subprocess.run(["bpftool", "btf", "dump", "file", str(btf), "format", "c"],
                       stdout=f, check=True)
    return out


# libbpf-tools' compat.bpf.h pattern: the reservation is made in a helper returning void *,
# with a per-CPU array as the fallback where ring buffers are missing.
COMPAT_BPF_H = """\
#ifndef COMPAT_BPF_H
#define COMPAT_BPF_H
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#define MAX_EVENT_SIZE 10240
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1);
         __uint(key_size, sizeof(__u32)); __uint(value_size, MAX_EVENT_SIZE); } heap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 256 * 1024); } events SEC(".maps");
static __always_inline void *reserve_buf(__u64 size)
{
    static const int zero = 0;
    if (bpf_core_type_exists(struct bpf_ringbuf))
        return bpf_ringbuf_reserve(&events, size, 0);
    return bpf_map_lookup_elem(&heap, &zero);
}
static __always_inline long submit_buf(void *ctx, void *buf, __u64 size)
{
    if (bpf_core_type_exists(struct bpf_ringbuf)) {
        bpf_ringbuf_submit(buf, 0);
        return 0;
    }
    return bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, buf, size);
}
#endif
"""

OPENSNOOP_H = """\
#define TASK_COMM_LEN 16
struct event { __u64 ts; pid_t pid; uid_t uid; int ret; char comm[TASK_COMM_LEN]; };
"""

OPENSNOOP = """\
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include "compat.bpf.h"
#include "opensnoop.h"
SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
    struct event *e;
    e = reserve_buf(sizeof(*e));
    if (!e)
        return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->ret = ctx->ret;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    submit_buf(ctx, e, sizeof(*e));
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture()
def libbpf_tool(tmp_path: Path, vmlinux_h: Path) -> Path:
    root = tmp_path / "tools"
    (root / "bpf").mkdir(parents=True)
    (root / "bpf" / "vmlinux.h").symlink_to(vmlinux_h)
    (root / "bpf" / "compat.bpf.h").write_text(COMPAT_BPF_H)
    (root / "bpf" / "opensnoop.h").write_text(OPENSNOOP_H)
    (root / "bpf" / "opensnoop.bpf.c").write_text(OPENSNOOP)
    (root / "pyproject.toml").write_text(
        '[tool.ebpf-gen]\noutput-dir = "skel"\ncflags = ["-Ibpf"]\n\n'
        '[[tool.ebpf-gen.source]]\npath = "bpf/opensnoop.bpf.c"\n')
    return root


def test_event_type_through_a_helper_returning_void_pointer(libbpf_tool: Path) -> None:
    proc = ebpf_gen("generate", cwd=libbpf_tool)
    assert proc.returncode == 0, proc.stderr
    module = (libbpf_tool / "skel" / "opensnoop.py").read_text()
    assert "events: RingBuf[Event]" in module
    assert "cannot infer" not in proc.stderr
    # the struct is laid out from the source, reached through reserve_buf() at the call site
    assert "struct event is not in BTF" in proc.stderr
    assert "reserve_buf() on map 'events'" in proc.stderr


def test_map_type_declared_on_the_command_line_and_in_config(libbpf_tool: Path) -> None:
    src = libbpf_tool / "bpf" / "opensnoop.bpf.c"
    # a void * all the way: nothing to infer from
    src.write_text(OPENSNOOP.replace("struct event *e;", "void *e;").replace(
        "e->pid = bpf_get_current_pid_tgid() >> 32;\n    e->ret = ctx->ret;\n"
        "    bpf_get_current_comm(&e->comm, sizeof(e->comm));\n", "").replace(
        "sizeof(*e)", "sizeof(struct event)"))
    proc = ebpf_gen("bpf/opensnoop.bpf.c", "--", "-Ibpf", cwd=libbpf_tool)
    assert proc.returncode == 0, proc.stderr
    assert "cannot infer the event type of map 'events'" in proc.stderr
    assert "events: RingBuf[bytes]" in (libbpf_tool / "generated" / "opensnoop.py").read_text()

    proc = ebpf_gen("bpf/opensnoop.bpf.c", "--map-type", "events=struct event", cwd=libbpf_tool)
    assert proc.returncode == 0, proc.stderr
    assert "cannot infer" not in proc.stderr
    module = (libbpf_tool / "generated" / "opensnoop.py").read_text()
    assert "events: RingBuf[Event]" in module

    (libbpf_tool / "pyproject.toml").write_text(
        (libbpf_tool / "pyproject.toml").read_text()
        + 'map-types = { events = "struct event" }\n')
    proc = ebpf_gen("generate", cwd=libbpf_tool)
    assert proc.returncode == 0, proc.stderr
    assert "events: RingBuf[Event]" in (libbpf_tool / "skel" / "opensnoop.py").read_text()

    for args, message in (
        (["--map-type", "events=struct evnt"],
         "opensnoop.bpf.c: --map-type events=struct evnt: no struct, union or typedef 'evnt' "
         "in the object's BTF or defined in the source"),
        (["--map-type", "evnts=struct event"],
         "opensnoop.bpf.c: --map-type evnts=struct event: no map named 'evnts' "
         "(maps: events, heap)"),
        (["--map-type", "heap=struct event"],
         "map 'heap' is a PERCPU_ARRAY, whose key and value types come from BTF"),
        (["--map-type", "events"], "--map-type 'events': expected MAP=TYPE"),
    ):
        proc = ebpf_gen("bpf/opensnoop.bpf.c", *args, cwd=libbpf_tool)
        assert proc.returncode == 2, proc.stderr
        [line] = [ln for ln in proc.stderr.splitlines()
                  if not ln.startswith("ebpf-gen: cflags from")]
        assert line.startswith("ebpf-gen: ") and message in line, line


# -- a runtime-only install: the wheel in a fresh venv, without the generator's dependencies

@pytest.fixture(scope="session")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the ebpf-gen wheel installed offline and nothing else."""
    import shutil

    base = tmp_path_factory.mktemp("wheel")
    tree = base / "src"  # build from a copy: a build leaves build/ and egg-info behind
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".vm", "build", "*.egg-info", ".*cache", "__pycache__", "dist"),
        symlinks=True)
    # build isolation fetches setuptools (and, before 70.1, wheel) as any user's build does
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--disable-pip-version-check", "-w", str(base / "dist"), str(tree)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    [whl] = (base / "dist").glob("ebpf_gen-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # --no-index: the runtime needs nothing from a registry
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index",
                           "--disable-pip-version-check", str(whl)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return venv


def test_runtime_only_install_has_no_generator_and_says_what_to_install(
        runtime_venv: Path, tmp_path: Path) -> None:
    py = str(runtime_venv / "bin" / "python")
    for mod in ("jinja2", "clang"):
        proc = subprocess.run([py, "-c", f"import {mod}"], capture_output=True, text=True)
        assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr
    proc = subprocess.run([py, "-c", "import ebpf_gen.runtime, sys; "
                           "print(sorted(m for m in ('jinja2', 'clang') if m in sys.modules))"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "[]\n", proc.stderr

    exe = str(runtime_venv / "bin" / "ebpf-gen")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("ebpf-gen ")
    (tmp_path / "p.bpf.c").write_text(PROBE)
    proc = subprocess.run([exe, "p.bpf.c"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    # the install command names this venv's own interpreter
    assert re.fullmatch(
        r"ebpf-gen: generating needs jinja2 and libclang, not installed here \(ebpf-gen alone "
        rf"is the runtime, for deployed apps\): {re.escape(py)}[\d.]* -m pip install "
        r"'ebpf-gen\[generator\]'\n", proc.stderr), proc.stderr
    assert not (tmp_path / "generated").exists()


APP_SOURCE = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u64); } execs SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_execve")
int count_exec(void *ctx) { __u32 k = 0; __u64 *v = bpf_map_lookup_elem(&execs, &k);
    if (v) __sync_fetch_and_add(v, 1); return 0; }
char LICENSE[] SEC("license") = "GPL";
"""

APP_MAIN = """\
import subprocess
import sys

from myapp.bpf import counter

assert "clang" not in sys.modules and "jinja2" not in sys.modules
with counter.load() as objs:
    with objs.programs.count_exec.attach():
        for _ in range(3):
            subprocess.run(["/bin/true"], check=True)
    print("execs", objs.maps.execs[0])
"""


@pytest.mark.kernel
def test_deployed_app_runs_without_libclang(runtime_venv: Path, tmp_path: Path) -> None:
    """Generate on the developer's machine, ship the package, run it where only the runtime
    is installed."""
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "counter.bpf.c").write_text(APP_SOURCE)
    proc = ebpf_gen("counter.bpf.c", "--output-dir", "myapp/bpf", cwd=dev)
    assert proc.returncode == 0, proc.stderr
    (dev / "myapp" / "__init__.py").write_text("")
    (dev / "myapp" / "bpf" / "__init__.py").write_text("")
    (dev / "myapp" / "__main__.py").write_text(APP_MAIN)

    import shutil

    deployed = tmp_path / "deployed"
    shutil.copytree(dev / "myapp", deployed / "myapp")  # the package, objects beside modules
    proc = subprocess.run([str(runtime_venv / "bin" / "python"), "-m", "myapp"],
                          cwd=deployed, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    count = int(proc.stdout.split()[-1])
    assert count >= 3, proc.stdout


def test_flag_paths_are_rebased_and_repeats_dropped(tmp_path: Path) -> None:
    from ebpf_gen.config import merge_flags, rebase_flags

    root, src = tmp_path, tmp_path / "bpf"
    src.mkdir()
    flags = ["-Iinclude", "-I", "inc2", "-isystem", "sys", "--sysroot=/abs", "-DX=1",
             "-include", "pre.h", "-I/usr/include"]
    assert rebase_flags(flags, root, src) == (
        "-I../include", "-I../inc2", "-isystem", "../sys", "--sysroot=/abs", "-DX=1",
        "-include", "../pre.h", "-I/usr/include")
    assert rebase_flags(flags, root, root) == tuple(flags)
    # the config's -Iinclude given again on the command line (spelled differently) counts once
    assert merge_flags(["-Iinclude", "-Wall"], ["-I", "./include", "-DY"], root) == (
        "-Wall", "-I", "./include", "-DY")
