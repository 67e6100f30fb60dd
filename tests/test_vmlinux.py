"""``ebpf-gen vmlinux``: a C header from BTF, checked by compiling it.

The oracle is the BTF itself: a header is compiled with a pointer to every struct and union
it defines, and the BTF clang writes for that object must give each type the size and
member offsets the original BTF gives it. bpftool's ``format c`` output is compiled the same
way; ebpf-gen's header must agree with it wherever bpftool's agrees with the kernel (and
where bpftool's does not, ebpf-gen's must still match the kernel, or fail as bpftool's does).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import ebpf_gen as ebpf_gen_pkg
import pytest
from ebpf_gen.btf.decode import decode_btf
from ebpf_gen.btf.types import Enum, Fwd, Spec, Struct, Typedef, Union_
from ebpf_gen.compile import multiarch_include_flags
from ebpf_gen.elf import parse_elf

from .conftest import need

VMLINUX = Path("/sys/kernel/btf/vmlinux")
Layout = tuple[int, tuple[tuple[str, int, int], ...]]


def ebpf_gen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ebpf_gen.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def layouts(spec: Spec) -> dict[str, Layout]:
    """Size and (name, bit offset, bitfield size) of each member, by 'struct name'."""
    out: dict[str, Layout] = {}
    for t in spec.types:
        if isinstance(t, (Struct, Union_)) and t.name:
            key = f"{'union' if isinstance(t, Union_) else 'struct'} {t.name}"
            out.setdefault(key, (t.size, tuple(
                (m.name, m.bit_offset, m.bitfield_size) for m in t.members)))
    return out


def compiled_layouts(header: Path, work: Path) -> dict[str, Layout]:
    """Compile ``header`` with a global pointer to every record it defines; read the BTF
    clang wrote back. Globals, because clang writes a struct member's pointee as a mere
    forward declaration; 1000 a file, because its time grows faster than their number."""
    names = re.findall(r"^((?:struct|union) \w+) \{", header.read_text(), re.M)
    out: dict[str, Layout] = {}
    for start in range(0, len(names), 1000):
        src = work / f"{header.stem}_{start}.c"
        ptrs = "".join(f"{n} *p{i};\n" for i, n in enumerate(names[start:start + 1000]))
        src.write_text(f'#include "{header}"\n{ptrs}')
        obj = src.with_suffix(".o")
        proc = subprocess.run(["clang", "-target", "bpf", "-g", "-Werror", "-c", str(src),
                               "-o", str(obj)], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out.update(layouts(decode_btf(parse_elf(obj.read_bytes(), str(obj)).btf)))
    return out


def test_kernel_header_matches_the_kernel_and_bpftool(tmp_path: Path) -> None:
    need(None if VMLINUX.is_file() else "no /sys/kernel/btf/vmlinux (kernel without BTF)")
    need(None if shutil.which("bpftool") else "bpftool not installed")
    proc = ebpf_gen("vmlinux", "-o", "vmlinux.h", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("/sys/kernel/btf/vmlinux: wrote vmlinux.h (")
    ref = tmp_path / "bpftool.h"
    with open(ref, "w") as f:
        subprocess.run(["bpftool", "btf", "dump", "file", str(VMLINUX), "format", "c"],
                       stdout=f, check=True)
    truth = layouts(decode_btf(VMLINUX.read_bytes(), lazy=False))
    ours = compiled_layouts(tmp_path / "vmlinux.h", tmp_path)
    theirs = compiled_layouts(ref, tmp_path)

    common = sorted(set(ours) & set(theirs) & set(truth))
    assert len(common) > 0.9 * len(theirs)  # nearly every record, not a handful
    ours_wrong = {k for k in common if ours[k] != truth[k]}
    theirs_wrong = {k for k in common if theirs[k] != truth[k]}
    # never worse than bpftool: what ebpf-gen gets wrong, bpftool gets wrong too (the BPF
    # target's own types, e.g. its va_list, differ from the kernel's)
    assert ours_wrong <= theirs_wrong, sorted(ours_wrong - theirs_wrong)[:10]
    same = [k for k in common if k not in theirs_wrong]
    assert [k for k in same if ours[k] != theirs[k]] == []
    print(f"{len(common)} records compared; bpftool's layout differs from the kernel's in "
          f"{len(theirs_wrong)}, ebpf-gen's in {len(ours_wrong)}: {sorted(ours_wrong)}")


def test_a_co_re_program_compiles_against_a_minimal_header(tmp_path: Path) -> None:
    need(None if VMLINUX.is_file() else "no /sys/kernel/btf/vmlinux (kernel without BTF)")
    proc = ebpf_gen("vmlinux", "--type", "struct task_struct", "--type",
                    "trace_event_raw_sys_exit", "-o", "vmlinux.h", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header = (tmp_path / "vmlinux.h").read_text()
    assert "struct task_struct {" in header and "struct mm_struct {" not in header
    assert "struct mm_struct;" in header  # reached through a pointer: declared only
    (tmp_path / "pid.bpf.c").write_text(
        '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_core_read.h>\n'
        'SEC("tracepoint/syscalls/sys_exit_openat")\n'
        "int on_exit(struct trace_event_raw_sys_exit *ctx) {\n"
        "    struct task_struct *t = (void *)bpf_get_current_task();\n"
        '    bpf_printk("%d %ld", BPF_CORE_READ(t, tgid), ctx->ret); return 0; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n')
    proc = ebpf_gen("pid.bpf.c", "--", "-Wall", "-Werror", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


SNIPPET = """\
struct inner { char c; long l; };
struct __attribute__((packed)) packed { char c; int i; short s; };
struct __attribute__((aligned(16))) wide { int x; };
struct bits { unsigned a: 3; unsigned b: 20; unsigned long long c: 40; char d; int e: 5; };
enum small { S0, S1 } __attribute__((packed));
enum big { B0 = 1ULL << 40 };
typedef int (*handler_t)(struct inner *, const char *const *, ...);
struct many {
    struct inner in;
    struct packed p;
    struct wide w;
    struct bits b;
    enum small sm;
    enum big bg;
    union { int u1; struct { short s1, s2; }; };
    handler_t h;
    void (*fns[3])(int);
    const volatile int *cv;
    int *const cp;
    char name[16];
    struct inner arr[2][3];
    int flex[];
};
struct many *p_many;
"""


def test_header_from_an_objects_btf_lays_out_every_record_as_btf_says(tmp_path: Path) -> None:
    """--btf with an ELF object: packed, over-aligned, bitfields, anonymous members,
    function pointers, qualifiers, multi-dimensional and flexible arrays."""
    src = tmp_path / "snippet.c"
    src.write_text(SNIPPET)
    obj = tmp_path / "snippet.o"
    subprocess.run(["clang", "-target", "bpf", "-g", "-c", str(src), "-o", str(obj)],
                   check=True)
    proc = ebpf_gen("vmlinux", "--btf", str(obj), "-o", "types.h", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header = (tmp_path / "types.h").read_text()
    assert "} __attribute__((packed));" in header and "(*fns[3])(int)" in header
    truth = layouts(decode_btf(parse_elf(obj.read_bytes(), str(obj)).btf))
    ours = compiled_layouts(tmp_path / "types.h", tmp_path)
    assert {k: ours[k] for k in truth} == truth


def test_errors(tmp_path: Path) -> None:
    proc = ebpf_gen("vmlinux", "--btf", "missing.btf", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, "ebpf-gen: missing.btf: no such file\n")
    (tmp_path / "junk.btf").write_bytes(b"not btf at all")
    proc = ebpf_gen("vmlinux", "--btf", "junk.btf", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("ebpf-gen: junk.btf")
    assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / "vmlinux.h").exists()
    if VMLINUX.is_file():
        proc = ebpf_gen("vmlinux", "--type", "struct no_such_thing", cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr == ("ebpf-gen: /sys/kernel/btf/vmlinux: --type struct "
                               "no_such_thing: no such type in the BTF\n")


@pytest.mark.parametrize("args", [["--version"], ["vmlinux", "--help"]])
def test_vmlinux_help_and_version(args: list[str], tmp_path: Path) -> None:
    assert ebpf_gen(*args, cwd=tmp_path).returncode == 0


# libbpf-tools' habits: CO-RE reads through pointers (task->real_parent->tgid, task->mm),
# a pointer only passed along (struct file), a BPF_PROG signature, a local of a kernel type,
# sizeof of a type nothing else names, enumerators (BPF_ANY, BPF_MAP_TYPE_RINGBUF).
TOOL = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

struct event { u32 pid; u32 ppid; u64 pgd; u64 binprm; char comm[16]; };
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    struct file *exe;
    if (!e)
        return 0;
    e->pid = BPF_CORE_READ(task, tgid);
    e->ppid = task->real_parent->tgid;
    e->pgd = (u64)BPF_CORE_READ(task, mm, pgd);
    e->binprm = sizeof(struct linux_binprm);
    exe = BPF_CORE_READ(task, mm, exe_file);
    bpf_printk("%p %d", exe, ctx->pid);
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, 0);
    return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
    struct bpf_sock_tuple tuple = {};
    tuple.ipv4.saddr = BPF_CORE_READ(next, pid);
    bpf_printk("%d %d", tuple.ipv4.saddr, BPF_ANY);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def shape(obj: Path) -> dict[tuple[str, str], object]:
    """What clang's BTF says of each named type in ``obj``: records with their size and
    members (name, bit offset, bitfield size), forward declarations, typedefs, enums."""
    spec = decode_btf(parse_elf(obj.read_bytes(), str(obj)).btf)
    out: dict[tuple[str, str], object] = {}
    for t in spec.types:
        if t.name and isinstance(t, (Struct, Union_)):
            out[(type(t).__name__, t.name)] = (t.size, tuple(
                (m.name, m.bit_offset, m.bitfield_size) for m in t.members))
        elif t.name and isinstance(t, (Fwd, Typedef, Enum)):
            out[(type(t).__name__, t.name)] = t.is_union if isinstance(t, Fwd) else (
                spec.resolve(t.id).kind if isinstance(t, Typedef) else t.values)
    return out


def compile_against(src: Path, header: Path, work: Path) -> Path:
    """``src`` compiled from ``work``, with ``header`` as the vmlinux.h beside it."""
    work.mkdir()
    shutil.copyfile(header, work / "vmlinux.h")
    shutil.copyfile(src, work / src.name)
    obj = work / "prog.o"
    proc = subprocess.run(
        ["clang", "-O2", "-g", "-target", "bpfel", "-D__TARGET_ARCH_x86", "-Wall",
         f"-I{Path(ebpf_gen_pkg.__file__).parent / 'include'}", *multiarch_include_flags(),
         "-c", str(work / src.name), "-o", str(obj)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return obj


@pytest.mark.parametrize("source", ["libbpf_tool", "core_task"])
def test_a_header_for_a_source_gives_the_same_btf_as_the_full_header(
        source: str, tmp_path: Path) -> None:
    """--for SOURCE: every type the program's BTF holds, defined or declared, with the size
    and member offsets the full header gives it; pointed-at-only types stay declarations."""
    need(None if VMLINUX.is_file() else "no /sys/kernel/btf/vmlinux (kernel without BTF)")
    src = tmp_path / "src" / f"{source}.bpf.c"
    src.parent.mkdir()
    if source == "libbpf_tool":
        src.write_text(TOOL)
    else:
        shutil.copyfile(Path(__file__).parent / "corpus" / "core_task.bpf.c", src)
    proc = ebpf_gen("vmlinux", "-o", "full.h", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = ebpf_gen("vmlinux", "--for", str(src), "-o", "minimal.h", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    full, minimal = (tmp_path / "full.h").read_text(), (tmp_path / "minimal.h").read_text()
    assert minimal.count("\n") * 10 < full.count("\n")
    assert "struct task_struct {" in minimal
    if source == "libbpf_tool":
        # read through: defined; only pointed at: declared
        for defined in ("mm_struct", "linux_binprm", "bpf_sock_tuple",
                        "trace_event_raw_sched_process_exec"):
            assert f"struct {defined} {{" in minimal, defined
        assert "struct file;" in minimal and "struct file {" not in minimal
        assert "\tBPF_ANY = 0," in minimal
    want = shape(compile_against(src, tmp_path / "full.h", tmp_path / "with_full"))
    got = shape(compile_against(src, tmp_path / "minimal.h", tmp_path / "with_minimal"))
    assert got == want, sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))


def test_header_for_a_source_errors(tmp_path: Path) -> None:
    need(None if VMLINUX.is_file() else "no /sys/kernel/btf/vmlinux (kernel without BTF)")
    proc = ebpf_gen("vmlinux", "--for", "nope.bpf.c", cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (2, "ebpf-gen: nope.bpf.c: no such source file\n")
    proc = ebpf_gen("vmlinux", "--", "-Ifoo", cwd=tmp_path)
    assert proc.returncode == 2 and "--for SOURCE" in proc.stderr
    (tmp_path / "bad.bpf.c").write_text('#include "vmlinux.h"\nint f(void) { return nope; }\n')
    proc = ebpf_gen("vmlinux", "--for", "bad.bpf.c", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("ebpf-gen: bad.bpf.c: does not compile against the full header")
    assert "use of undeclared identifier 'nope'" in proc.stderr
