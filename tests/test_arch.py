"""Objects per architecture (gen/ebpf_gen/build.py, runtime/arch.py) and the parallel compile.

A program reading pt_regs through bpf_tracing.h's PT_REGS_* macros compiles to different
instructions per __TARGET_ARCH_*: it gets one object per architecture. Every other program
keeps one object per byte order. Selection is by platform.machine(), tested here for every
spelling without foreign hardware (loading there is a later step).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ebpf_gen.errors import ConfigError
from ebpf_gen.generate import Options, build_from_source
from ebpf_gen.runtime import ObjectFile, ObjectFileError
from ebpf_gen.runtime.arch import ARCHES, DEFAULT_ARCHES, MACHINES, ArchError, machine_arch, select

INC = "-I/usr/include/x86_64-linux-gnu"

# x86's struct pt_regs comes from the UAPI header; arm64's user_pt_regs only where the arm64
# build is given a header for it (#include_next-free: the test supplies it per architecture)
KPROBE = """\
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#ifdef __TARGET_ARCH_arm64
#include "arm64_regs.h"
#endif
__u64 seen = 0;
SEC("kprobe/do_nanosleep")
int BPF_KPROBE(probe, void *arg) { seen = (__u64)arg; return 0; }
char LICENSE[] SEC("license") = "GPL";
"""
ARM64_REGS = "struct user_pt_regs { __u64 regs[31]; __u64 sp; __u64 pc; __u64 pstate; };\n"
# Never touches pt_regs: the same bytes for every architecture
TRACEPOINT = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
__u64 calls = 0;
SEC("tracepoint/syscalls/sys_enter_execve")
int count(void *ctx) { calls++; return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


def _source(tmp: Path, text: str, *, arm64_header: bool) -> Path:
    src = tmp / "src" / "p.bpf.c"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(text)
    if arm64_header:
        (tmp / "arm64").mkdir(exist_ok=True)
        (tmp / "arm64" / "arm64_regs.h").write_text(ARM64_REGS)
    return src


def _disasm(path: Path) -> str:
    return subprocess.run(["llvm-objdump", "-d", str(path)], capture_output=True, text=True,
                          check=True).stdout


def _r1_loads(disasm: str) -> set[int]:
    """Offsets of the loads through r1 (the context): llvm-objdump 14 prints them in decimal
    (``r1 + 112)``), 19 in hex (``r1 + 0x70)``)."""
    return {int(m, 0) for m in re.findall(r"= \*\(u64 \*\)\(r1 \+ (0x[0-9a-f]+|\d+)\)", disasm)}


def _opts(tmp: Path, **kw: object) -> Options:
    base: dict[str, object] = dict(output_dir=tmp / "out", targets=("bpfel",),
                                   arches=("x86", "arm64"), cflags=(INC,), cflags_dir=tmp)
    base.update(kw)
    return Options(**base)  # type: ignore[arg-type]


def test_pt_regs_reader_gets_one_object_per_arch(tmp_path: Path, clang: str) -> None:
    src = _source(tmp_path, KPROBE, arm64_header=True)
    opts = _opts(tmp_path, arch_cflags=(("arm64", ("-Iarm64",)),))
    res = build_from_source(src, opts)
    assert sorted(res.files) == ["p.py", "p_bpfel_arm64.o", "p_bpfel_x86.o"]
    for name in ("p_bpfel_x86.o", "p_bpfel_arm64.o"):
        (tmp_path / name).write_bytes(res.files[name])
    x86, arm64 = _disasm(tmp_path / "p_bpfel_x86.o"), _disasm(tmp_path / "p_bpfel_arm64.o")
    # PT_REGS_PARM1: rdi at offset 112 of x86's pt_regs, regs[0] at 0 of arm64's
    assert _r1_loads(x86) == {112}, x86
    assert _r1_loads(arm64) == {0}, arm64
    text = res.files["p.py"].decode()
    assert '"little/arm64": ObjectFile(' in text and '"little/x86": ObjectFile(' in text
    assert '"little": ObjectFile(' not in text
    assert not res.diagnostics


def test_arch_independent_source_keeps_one_object_per_byte_order(tmp_path: Path,
                                                                  clang: str) -> None:
    src = _source(tmp_path, TRACEPOINT, arm64_header=False)
    res = build_from_source(src, _opts(tmp_path, targets=("bpfel", "bpfeb"),
                                       arches=DEFAULT_ARCHES))
    assert sorted(res.files) == ["p.py", "p_bpfeb.o", "p_bpfel.o"]
    text = res.files["p.py"].decode()
    assert '"little": ObjectFile(' in text and '"big": ObjectFile(' in text
    assert "/" not in "".join(k for k in ("little", "big"))
    # the bytes are x86's alone: what the generator wrote before it knew architectures
    x86_only = build_from_source(src, _opts(tmp_path, targets=("bpfel", "bpfeb"),
                                            arches=("x86", "s390")))
    assert x86_only.files == res.files


def test_arch_that_does_not_compile_is_recorded_and_refused(tmp_path: Path, clang: str) -> None:
    # No arm64 header: BPF_KPROBE for arm64 fails on struct user_pt_regs
    plain = KPROBE.replace('#ifdef __TARGET_ARCH_arm64\n#include "arm64_regs.h"\n#endif\n', "")
    assert plain != KPROBE
    src = _source(tmp_path, plain, arm64_header=False)
    res = build_from_source(src, _opts(tmp_path))
    assert sorted(res.files) == ["p.py", "p_bpfel_x86.o"]
    (warning,) = [str(d) for d in res.diagnostics]
    assert "no bpfel object for arm64" in warning and "user_pt_regs" in warning
    assert "--arch-cflags" in warning and f"({src}" not in warning  # clang's path, shortened
    assert '"little/x86": ObjectFile(' in res.files["p.py"].decode()


def test_no_architecture_compiles_is_the_compile_error(tmp_path: Path, clang: str) -> None:
    from ebpf_gen.errors import CompileError

    src = _source(tmp_path, KPROBE.replace("return 0; }", "return undefined_name; }"),
                  arm64_header=True)
    with pytest.raises(CompileError, match="undefined_name"):
        build_from_source(src, _opts(tmp_path))


@pytest.mark.parametrize("jobs", [1, 3])
def test_parallel_output_is_the_serial_output(tmp_path: Path, clang: str, jobs: int) -> None:
    src = _source(tmp_path, KPROBE, arm64_header=True)
    both = dict(targets=("bpfel", "bpfeb"), arches=DEFAULT_ARCHES,
                arch_cflags=(("arm64", ("-Iarm64",)),))
    serial = build_from_source(src, _opts(tmp_path, jobs=1, **both))
    again = build_from_source(src, _opts(tmp_path, jobs=jobs, **both))
    assert again.files == serial.files
    assert [str(d) for d in again.diagnostics] == [str(d) for d in serial.diagnostics]
    assert again.inputs == serial.inputs


# A ring buffer whose event type only the source has: analyze() needs the libclang parse.
RING = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct event { __u32 pid; __u64 when; };
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_execve")
int send(void *ctx)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) { e->pid = 1; e->when = 2; bpf_ringbuf_submit(e, 0); }
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize(("targets", "order"), [(("bpfel", "bpfeb"), "little"),
                                                (("bpfeb",), "big")])
def test_event_map_source_parses_once_from_the_start(
        tmp_path: Path, clang: str, monkeypatch: pytest.MonkeyPatch,
        targets: tuple[str, ...], order: str) -> None:
    """A source defining an event map is parsed at once, beside the compiles (its own
    thread), for the byte order analyze() reads: once, and to the serial run's module."""
    import threading

    import ebpf_gen.source

    real = ebpf_gen.source.parse
    calls: list[tuple[str, str]] = []

    def parse(*args: object, **kw: object) -> object:
        calls.append((threading.current_thread().name, str(kw["byteorder"])))
        return real(*args, **kw)  # type: ignore[arg-type]

    src = _source(tmp_path, RING, arm64_header=False)
    arches = ("x86", "s390")
    serial = build_from_source(src, _opts(tmp_path, jobs=1, targets=targets, arches=arches))
    monkeypatch.setattr(ebpf_gen.source, "parse", parse)
    res = build_from_source(src, _opts(tmp_path, jobs=2, targets=targets, arches=arches))
    assert [(name.startswith("ebpf-gen-parse"), bo) for name, bo in calls] == [(True, order)]
    assert res.files == serial.files
    assert "class Event(CStruct):" in res.files["p.py"].decode()


def test_source_without_event_map_parses_when_the_object_asks(
        tmp_path: Path, clang: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No event map in the source: no parse is guessed; --type of a struct BTF lacks still
    gets its parse, from the pool, after the first object."""
    import threading

    import ebpf_gen.source

    real = ebpf_gen.source.parse
    names: list[str] = []

    def parse(*args: object, **kw: object) -> object:
        names.append(threading.current_thread().name)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ebpf_gen.source, "parse", parse)
    knob = TRACEPOINT.replace("__u64 calls", "struct knob { int k; };\n__u64 calls")
    src = _source(tmp_path, knob, arm64_header=False)
    res = build_from_source(src, _opts(tmp_path, jobs=2, types=("struct knob",)))
    assert len(names) == 1 and not names[0].startswith("ebpf-gen-parse")
    assert "class Knob(CStruct):" in res.files["p.py"].decode()
    build_from_source(src, _opts(tmp_path, jobs=2))
    assert len(names) == 1  # nothing asked for a parse: none made


# -- selection (no foreign hardware: platform.machine() values given) --------------------

FILES = {
    "little/x86": ObjectFile("p_bpfel_x86.o", sha256="0" * 64),
    "little/arm64": ObjectFile("p_bpfel_arm64.o", sha256="0" * 64),
    "big/s390": ObjectFile("p_bpfeb_s390.o", sha256="0" * 64),
}


@pytest.mark.parametrize(("machine", "order", "file"), [
    ("x86_64", "little", "p_bpfel_x86.o"),
    ("amd64", "little", "p_bpfel_x86.o"),
    ("AMD64", "little", "p_bpfel_x86.o"),
    ("aarch64", "little", "p_bpfel_arm64.o"),
    ("arm64", "little", "p_bpfel_arm64.o"),
    ("s390x", "big", "p_bpfeb_s390.o"),
])
def test_select_per_machine(machine: str, order: str, file: str) -> None:
    assert select(FILES, name="p", machine=machine, byteorder=order).filename == file


@pytest.mark.parametrize("machine", ["x86_64", "aarch64", "riscv64", "ppc64le", "mystery"])
def test_arch_independent_object_serves_every_machine(machine: str) -> None:
    files = {"little": ObjectFile("p_bpfel.o", sha256="0" * 64)}
    assert select(files, name="p", machine=machine, byteorder="little").filename == "p_bpfel.o"


def test_machine_names() -> None:
    assert machine_arch("x86_64") == "x86" and machine_arch("ppc64le") == "powerpc"
    assert machine_arch("riscv64") == "riscv" and machine_arch("loongarch64") == "loongarch"
    assert machine_arch("armv7l") == "arm" and machine_arch("mystery") is None
    assert set(MACHINES.values()) <= set(ARCHES) and set(DEFAULT_ARCHES) <= set(ARCHES)
    assert machine_arch() is not None  # this host's own machine is known


def test_refusal_names_the_option() -> None:
    with pytest.raises(ArchError, match=r"no object built for riscv .*machine 'riscv64'.*"
                                        r"--arch including riscv") as e:
        select(FILES, name="p", machine="riscv64", byteorder="little")
    assert isinstance(e.value, ObjectFileError) and "\n" not in str(e.value)
    with pytest.raises(ArchError, match=r"this big-endian machine .*--target including bpfeb"):
        select({"little": FILES["little/x86"]}, name="p", machine="s390x", byteorder="big")
    with pytest.raises(ArchError, match=r"'mystery' is not an architecture"):
        select(FILES, name="p", machine="mystery", byteorder="little")


# -- options -------------------------------------------------------------------------------

def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "ebpf_gen.cli", *args], cwd=cwd,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--arch", "x86,vax"], {}, "--arch: unknown architecture 'vax' (known: x86, arm64"),
    (["--arch", ","], {}, "--arch: no architecture given"),
    (["--arch-cflags", "arm64"], {}, "'arm64' is not ARCH=FLAGS"),
    (["--arch-cflags", "vax=-I."], {}, "--arch-cflags: unknown architecture 'vax'"),
    (["--jobs", "0"], {}, "--jobs=0: out of range (1 to 256)"),
    (["--jobs", "999"], {}, "--jobs=999: out of range (1 to 256)"),
    ([], {"EBPF_GEN_JOBS": "many"}, "EBPF_GEN_JOBS='many' is not a number"),
    ([], {"EBPF_GEN_JOBS": "-1"}, "EBPF_GEN_JOBS=-1: out of range"),
])
def test_bad_options_one_line(tmp_path: Path, args: list[str], env: dict[str, str],
                              message: str) -> None:
    src = _source(tmp_path, TRACEPOINT, arm64_header=False)
    proc = _cli(str(src), "--no-config", *args, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert message in proc.stderr


def test_jobs_not_a_number(tmp_path: Path) -> None:
    proc = _cli("x.bpf.c", "--jobs", "two", cwd=tmp_path)
    assert proc.returncode == 2 and "'two' is not a number" in proc.stderr


@pytest.mark.parametrize(("table", "message"), [
    ('arch = ["x86", "vax"]', "arch: unknown architecture 'vax'"),
    ('arch = "x86"', "arch"),
    ('arch-cflags = { vax = ["-I."] }', "unknown architecture 'vax'"),
    ('arch-cflags = ["-I."]', "arch-cflags must be a table"),
])
def test_bad_config(tmp_path: Path, table: str, message: str) -> None:
    from ebpf_gen.config import load_config

    (tmp_path / "pyproject.toml").write_text(f"[tool.ebpf-gen]\n{table}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "pyproject.toml")


def test_config_arch_and_cflags(tmp_path: Path, clang: str) -> None:
    src = _source(tmp_path, KPROBE, arm64_header=True)
    (tmp_path / "pyproject.toml").write_text(
        "[tool.ebpf-gen]\n"
        f'cflags = ["{INC}"]\n'
        'arch = ["x86", "arm64"]\n'
        'arch-cflags = { arm64 = ["-Iarm64"] }\n'
        "[[tool.ebpf-gen.source]]\n"
        f'path = "{src.relative_to(tmp_path)}"\n')
    proc = _cli("generate", "--jobs", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = sorted(p.name for p in (tmp_path / "generated").iterdir())
    assert out == ["p.py", "p_bpfel_arm64.o", "p_bpfel_x86.o"], out


def test_unused_pt_regs_flavour_is_not_a_difference() -> None:
    from ebpf_gen.build import comparable

    x86 = b'# 1 "p.bpf.c"\nint x;\n'
    arm64 = (b'# 1 "p.bpf.c"\n# 163 "/usr/include/bpf/bpf_tracing.h" 3 4\n'
             b"struct pt_regs___arm64 {\n unsigned long orig_x0;\n};\nint x;\n")
    assert comparable(arm64) == comparable(x86)
    # used, the flavour's name appears outside its declaration: still different
    used = arm64 + b"long f(void *c) { return ((struct pt_regs___arm64 *)c)->orig_x0; }\n"
    assert comparable(used) != comparable(x86 + b"long f(void *c) { return 0; }\n")
    # libbpf 1.5 and later (Debian 13) mark each flavour, riscv's included, CO-RE relocatable
    for arch, reg in (("arm64", "orig_x0"), ("riscv", "orig_a0")):
        marked = (f"struct pt_regs___{arch} {{\n unsigned long {reg};\n}}"
                  " __attribute__((preserve_access_index));\nint x;\n").encode()
        marker = b'# 168 "/usr/include/bpf/bpf_tracing.h" 3 4\n'
        assert comparable(b'# 1 "p.bpf.c"\n' + marker + marked) == comparable(x86)


# -- step 1: the headers that test __TARGET_ARCH_ decide without preprocessing the source ----

def _built(tmp: Path, src: Path, **kw: object) -> dict[str, object]:
    from ebpf_gen.build import Pool, build_objects

    pool = Pool(2)
    try:
        built = build_objects(src, tmp, "p", targets=kw.pop("targets", ("bpfel",)),  # type: ignore[arg-type]
                              arches=kw.pop("arches", ("x86", "arm64")),  # type: ignore[arg-type]
                              cflags=(INC,), pool=pool, **kw)  # type: ignore[arg-type]
    finally:
        pool.close()
    return {order: (b.check, sorted({name for name, _ in b.objects.values()}))
            for order, b in built.items()}


def test_bpf_tracing_without_pt_regs_shares_one_object_unpreprocessed(tmp_path: Path,
                                                                      clang: str) -> None:
    # bpf_tracing.h tests __TARGET_ARCH_*, BPF_PROG does not depend on it: every architecture
    # is decided from bpf_tracing.h's macros alone, and shares the primary's object
    src = _source(tmp_path, TRACEPOINT.replace(
        "int count(void *ctx) { calls++; return 0; }",
        "int BPF_PROG(count, void *a) { calls += (__u64)a; return 0; }"), arm64_header=False)
    (tmp_path / "work").mkdir()
    got = _built(tmp_path / "work", src, targets=("bpfel", "bpfeb"), arches=DEFAULT_ARCHES)
    assert got == {"little": ("headers", ["p_bpfel.o"]), "big": ("headers", ["p_bpfeb.o"])}
    assert not list((tmp_path / "work").glob("*.i")), "step 1 decided: nothing preprocessed"


@pytest.mark.parametrize("use", [
    # through a header of the user's, which never spells __TARGET_ARCH_
    '#define FIRST(c) PT_REGS_PARM1(c)\n',
    # a name built by pasting: only its leading piece appears
    '#define FIRST(c) PT_REGS_PARM ## 1(c)\n',
])
def test_pt_regs_use_through_a_user_header_is_preprocessed(tmp_path: Path, clang: str,
                                                           use: str) -> None:
    text = """\
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "first.h"
__u64 seen = 0;
SEC("kprobe/do_nanosleep")
int probe(struct pt_regs *ctx) { seen = FIRST(ctx); return 0; }
char LICENSE[] SEC("license") = "GPL";
"""
    src = _source(tmp_path, text, arm64_header=False)
    (src.parent / "first.h").write_text(use)
    (tmp_path / "work").mkdir()
    # arm64's PT_REGS_PARM1 needs struct user_pt_regs, which x86's headers lack: had the
    # check judged the source architecture-free, arm64 would share x86's object
    assert _built(tmp_path / "work", src) == {"little": ("preprocessed", ["p_bpfel_x86.o"])}


def test_arch_dependent_names_of_bpf_tracing(clang: str) -> None:
    from ebpf_gen.build import arch_dependent_names

    probes = [subprocess.run(
        [clang, "-E", "-dD", "-target", "bpfel", f"-D__TARGET_ARCH_{a}", INC, "-x", "c", "-"],
        input=b"#define __VMLINUX_H__\n#include <bpf/bpf_tracing.h>\n", capture_output=True,
        check=True).stdout for a in ("x86", "arm64", "riscv")]
    names = arch_dependent_names(probes)
    assert names is not None
    # differently defined, reached through a body, reached through a paste
    assert {b"PT_REGS_PARM1", b"BPF_KSYSCALL", b"BPF_KPROBE", b"BPF_KRETPROBE"} <= names
    assert {b"BPF_PROG", b"bpf_printk", b"SEC"}.isdisjoint(names)
    # code that differs (not only macros) is no verdict on names: None, preprocess all
    assert arch_dependent_names([probes[0], probes[1] + b"int only_here;\n"]) is None


@pytest.mark.parametrize("piece", [1, 5, 64, 1 << 18])
def test_identifiers_in_pieces_are_the_whole_files(piece: int) -> None:
    # Step 1 scans big headers (vmlinux.h) in pieces so pool threads get the GIL between
    # them; a cut inside a word would make up names (PT_REGS_ + PARM1) or lose them.
    from ebpf_gen.build import _IDENT, identifiers

    text = Path("/usr/include/bpf/bpf_tracing.h").read_bytes()
    whole = frozenset(_IDENT.findall(text))
    assert b"PT_REGS_PARM1" in whole
    assert identifiers(text, piece) == whole
    assert identifiers(b"a\nbc d", piece) == {b"a", b"bc", b"d"}
    assert identifiers(b"", piece) == frozenset()
