"""The ebpf-gen command line, run as a real subprocess on real clang output.

Every bad input must give exit 2 and one ``ebpf-gen: <file>: <what>`` line (compile errors
add clang's own diagnostics below it), leave existing outputs byte-for-byte as they were,
and leave no temp files behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import compile_bpf

CORPUS = Path(__file__).parent / "corpus"
INC = "-I/usr/include/x86_64-linux-gnu"
SENTINEL = b"previous output, must survive\n"

HELLO = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct event { __u32 pid; char comm[16]; };
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } events SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 64);
         __type(key, __u32); __type(value, __u64); } counts SEC(".maps");
__u64 calls = 0;
const volatile __u32 target_pid = 0;
SEC("tracepoint/syscalls/sys_enter_execve")
int hello(void *ctx) {
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    bpf_ringbuf_submit(e, 0);
    calls += target_pid;
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ebpf_gen.cli", *args],
        cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.is_dir() else {}


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "hello.bpf.c").write_text(HELLO)
    out = tmp_path / "generated"
    out.mkdir()
    for name in ("hello.py", "hello_bpfel.o", "hello_bpfeb.o"):
        (out / name).write_bytes(SENTINEL)
    return tmp_path


def assert_failed(proc: subprocess.CompletedProcess[str], names: str, project: Path,
                  *, one_line: bool = True) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    # compiler-style warnings from source analysis may come first; the error is one line
    lines = [ln for ln in proc.stderr.splitlines() if ": warning: " not in ln]
    if one_line:
        assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"ebpf-gen: {names}"), proc.stderr
    out = project / "generated"
    assert snapshot(out) == {n: SENTINEL for n in ("hello.py", "hello_bpfel.o", "hello_bpfeb.o")}


def test_help_has_examples(tmp_path: Path) -> None:
    proc = run("--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "ebpf-gen generate --check" in proc.stdout
    assert "ebpf-gen --object build/probe.o" in proc.stdout
    gen = run("generate", "--help", cwd=tmp_path)
    assert gen.returncode == 0 and "[[tool.ebpf-gen.source]]" in gen.stdout


def test_needs_source_or_object(tmp_path: Path) -> None:
    proc = run(cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ebpf-gen: give either a C source file or --object OBJ " \
                                  "(see --help)"


def test_not_an_elf(project: Path) -> None:
    bad = project / "hello.o"
    bad.write_text("not an object\n")
    proc = run("--object", "hello.o", "--stem", "hello", cwd=project)
    assert_failed(proc, "hello.o: not an ELF file", project)


def test_missing_object(project: Path) -> None:
    proc = run("--object", "nope.o", "--stem", "hello", cwd=project)
    assert_failed(proc, "nope.o: cannot read", project)


def test_host_object(project: Path) -> None:
    (project / "host.c").write_text("int x = 1;\n")
    subprocess.run(["gcc", "-c", "host.c", "-o", "host.o"], cwd=project, check=True)
    proc = run("--object", "host.o", "--stem", "hello", cwd=project)
    assert_failed(proc, "host.o: not a BPF object (e_machine EM_X86_64", project)


def test_object_without_btf(project: Path) -> None:
    subprocess.run(["clang", "-O2", "-target", "bpfel", INC, "-c", "src/hello.bpf.c", "-o",
                    "nobtf.o"], cwd=project, check=True)
    proc = run("--object", "nobtf.o", "--stem", "hello", cwd=project)
    assert_failed(proc, "nobtf.o: no .BTF section", project)


@pytest.mark.parametrize("damage", ["type_len", "str_len", "hdr_len", "bad_kind"])
def test_malformed_btf(project: Path, damage: str) -> None:
    from ebpf_gen.elf import read_elf

    obj = compile_bpf(project / "src" / "hello.bpf.c", project / "good.o")
    data = bytearray(obj.read_bytes())
    btf = read_elf(obj).btf
    start = bytes(data).index(btf)
    if damage == "type_len":
        data[start + 12 : start + 16] = (len(btf) * 2).to_bytes(4, "little")
    elif damage == "str_len":
        data[start + 20 : start + 24] = (len(btf) * 2).to_bytes(4, "little")
    elif damage == "hdr_len":
        data[start + 4 : start + 8] = (0xFFFF).to_bytes(4, "little")
    else:  # the first type's info word: kind 31 does not exist
        hdr_len = int.from_bytes(data[start + 4 : start + 8], "little")
        info = start + hdr_len + 4
        data[info : info + 4] = (31 << 24).to_bytes(4, "little")
    (project / "bad.o").write_bytes(bytes(data))
    proc = run("--object", "bad.o", "--stem", "hello", cwd=project)
    assert_failed(proc, "bad.o: ", project)


def test_truncated_elf(project: Path) -> None:
    obj = compile_bpf(project / "src" / "hello.bpf.c", project / "good.o")
    (project / "cut.o").write_bytes(obj.read_bytes()[:100])
    proc = run("--object", "cut.o", "--stem", "hello", cwd=project)
    assert_failed(proc, "cut.o: ", project)


def test_clang_missing(project: Path) -> None:
    proc = run("src/hello.bpf.c", "--cc", "/nonexistent/clang", cwd=project)
    assert_failed(proc, "src/hello.bpf.c: /nonexistent/clang: command not found", project)


def test_source_without_btf_names_the_source(project: Path) -> None:
    # An empty program compiles to an object with no .BTF; the message must name the source
    # and byte order, not the temporary object that is gone by the time it is read.
    (project / "src" / "hello.bpf.c").write_text("")
    proc = run("src/hello.bpf.c", cwd=project)
    assert_failed(proc, "src/hello.bpf.c (bpfel): no .BTF section", project)


def test_module_text_does_not_depend_on_the_invocation(project: Path) -> None:
    # Regenerating one file as the README shows must not make `generate --check` fail: the
    # module records no command line, options or tool version.
    (project / "pyproject.toml").write_text(
        f'[tool.ebpf-gen]\noutput-dir = "generated"\ncflags = ["{INC}"]\n'
        '[[tool.ebpf-gen.source]]\npath = "src/hello.bpf.c"\n'
    )
    proc = run("generate", cwd=project)
    assert proc.returncode == 0, proc.stderr
    by_config = (project / "generated" / "hello.py").read_text()
    proc = run("src/hello.bpf.c", "--output-dir", "generated", "--", INC, cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert (project / "generated" / "hello.py").read_text() == by_config
    proc = run("generate", "--check", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "--output-dir" not in by_config  # no command line in the docstring


CLASH = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u32); } print SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u64); } %s SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_execve") int list(void *ctx) { return 0; }
SEC("tracepoint/syscalls/sys_enter_execve") int %s(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize(("map2", "prog2", "message"), [
    ("print_", "other",
     "src/hello.bpf.c: map print_: Python name 'print_' is already used (two maps"),
    ("other", "list_",
     "src/hello.bpf.c: program list_: Python name 'list_' is already used (two programs"),
])
def test_names_escaping_alike_fail(project: Path, map2: str, prog2: str, message: str) -> None:
    # `print` escapes to `print_`; a second `print_` would hide it from the runtime
    (project / "src" / "hello.bpf.c").write_text(CLASH % (map2, prog2))
    proc = run("src/hello.bpf.c", "--", INC, cwd=project)
    assert_failed(proc, message, project)


def test_static_program_is_refused_before_libbpf_refuses_it(project: Path) -> None:
    # libbpf 1.x fails to open the object ("program ... is static and not supported").
    (project / "src" / "hello.bpf.c").write_text(HELLO.replace("int hello(", "static int hello("))
    proc = run("src/hello.bpf.c", "--", INC, cwd=project)
    assert_failed(proc, "src/hello.bpf.c (bpfel): section 'tracepoint/syscalls/sys_enter_execve': "
                  "program 'hello' is static, and libbpf does not load static programs: drop "
                  "'static'", project)


def test_clang_failing_shows_its_diagnostic(project: Path) -> None:
    (project / "src" / "hello.bpf.c").write_text(HELLO.replace("return 0;\n}", "return x;\n}"))
    proc = run("src/hello.bpf.c", "--", INC, cwd=project)
    assert_failed(proc, "src/hello.bpf.c: clang failed (exit 1): "
                  "clang -O2 -g -D__TARGET_ARCH_x86 -target bpfel",
                  project, one_line=False)
    assert "error: use of undeclared identifier 'x'" in proc.stderr


def test_bad_target(project: Path) -> None:
    proc = run("src/hello.bpf.c", "--target", "x86", cwd=project)
    assert_failed(proc, "unknown target 'x86'", project)


def test_bad_stem(project: Path) -> None:
    proc = run("src/hello.bpf.c", "--stem", "not-valid", cwd=project)
    assert_failed(proc, "stem 'not-valid' is not a valid Python module name", project)


def test_unknown_type(project: Path) -> None:
    proc = run("src/hello.bpf.c", "--type", "struct no_such_thing", "--", INC, cwd=project)
    assert_failed(proc, "", project)
    assert "no_such_thing" in proc.stderr


def test_unwritable_output_dir(project: Path) -> None:
    # a directory below a regular file cannot be created, even by root
    blocker = project / "blocker"
    blocker.write_text("a file, not a directory\n")
    proc = run("src/hello.bpf.c", "--output-dir", "blocker/out", "--", INC, cwd=project)
    assert_failed(proc, "blocker/out: cannot create output directory", project)
    assert blocker.read_text() == "a file, not a directory\n"


def test_write_failure_leaves_outputs_and_no_temp_files(project: Path) -> None:
    # os.replace onto a directory fails as root too: the .py target is a non-empty directory
    out = project / "generated"
    (out / "hello.py").unlink()
    (out / "hello.py").mkdir()
    (out / "hello.py" / "keep").write_text("x")
    before = {p.name for p in out.iterdir()}
    proc = run("src/hello.bpf.c", "--", INC, cwd=project)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("ebpf-gen: generated: cannot write outputs")
    assert {p.name for p in out.iterdir()} == before  # no temp files left
    assert (out / "hello_bpfel.o").read_bytes() == SENTINEL


def test_generate_check_and_determinism(project: Path) -> None:
    out = project / "generated"
    for p in out.iterdir():
        p.unlink()
    args = ("src/hello.bpf.c", "--", INC)
    first = run(*args, cwd=project)
    assert first.returncode == 0, first.stderr
    files = snapshot(out)
    assert set(files) == {"hello.py", "hello_bpfel.o", "hello_bpfeb.o"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    text = files["hello.py"].decode()
    assert str(project) not in text and "src/hello.bpf.c" in text
    assert files["hello_bpfel.o"] != files["hello_bpfeb.o"]

    again = run(*args, cwd=project)
    assert again.returncode == 0 and snapshot(out) == files  # deterministic

    check = run(*args[:1], "--check", *args[1:], cwd=project)
    assert check.returncode == 0 and check.stdout == ""
    (out / "hello.py").write_text("# stale\n")
    check = run(*args[:1], "--check", *args[1:], cwd=project)
    assert check.returncode == 1
    assert check.stdout.splitlines() == ["would change: generated/hello.py"]
    assert (out / "hello.py").read_text() == "# stale\n"  # --check writes nothing

    # the generated module imports (its layout asserts run at import)
    assert run(*args, cwd=project).returncode == 0
    env = dict(os.environ, PYTHONPATH=str(out))
    imp = subprocess.run([sys.executable, "-c", "import hello; print(hello.OBJECT.name)"],
                         cwd=project, env=env, capture_output=True, text=True)
    assert imp.returncode == 0, imp.stderr



def test_objects_no_longer_generated_are_removed(project: Path) -> None:
    """An object set that changes (one object per byte order <-> one per architecture) must
    not leave the old files to be committed beside the new ones; other stems' stay."""
    out = project / "generated"
    args = ("src/hello.bpf.c", "--", INC)
    assert run(*args, cwd=project).returncode == 0
    files = snapshot(out)
    for name in ("hello_bpfel_x86.o", "hello_bpfeb_s390.o", "hello2_bpfel.o",
                 "hello_bpfel_bpfel.o", "notes.txt"):
        (out / name).write_bytes(b"old")
    check = run(*args[:1], "--check", *args[1:], cwd=project)
    assert check.returncode == 1
    assert check.stdout.splitlines() == ["would remove: generated/hello_bpfeb_s390.o",
                                         "would remove: generated/hello_bpfel_x86.o"]
    again = run(*args, cwd=project)
    assert again.returncode == 0, again.stderr
    assert "removed generated/hello_bpfeb_s390.o, generated/hello_bpfel_x86.o" in again.stdout
    assert snapshot(out) == {**files, "hello2_bpfel.o": b"old", "hello_bpfel_bpfel.o": b"old",
                             "notes.txt": b"old"}


def test_same_output_from_two_checkouts(tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b/c"):
        root = tmp_path / name
        (root / "src").mkdir(parents=True)
        (root / "src" / "hello.bpf.c").write_text(HELLO)
        proc = run("src/hello.bpf.c", "--", INC, cwd=root)
        assert proc.returncode == 0, proc.stderr
        outs.append(snapshot(root / "generated"))
    assert outs[0] == outs[1]


PYPROJECT = """\
[tool.ebpf-gen]
output-dir = "generated"
cflags = ["-I/usr/include/x86_64-linux-gnu"]

[[tool.ebpf-gen.source]]
path = "src/hello.bpf.c"
"""


def test_generate_bad_config(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.ebpf-gen]\noutput-dirr = 'x'\n")
    proc = run("generate", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"ebpf-gen: {tmp_path}/pyproject.toml: [tool.ebpf-gen]: "
                                  "unknown key 'output-dirr'")
    assert len(proc.stderr.splitlines()) == 1


def test_generate_from_pyproject_skips_when_unchanged(project: Path) -> None:
    (project / "pyproject.toml").write_text(PYPROJECT)
    for p in (project / "generated").iterdir():
        p.unlink()
    first = run("generate", cwd=project)
    assert first.returncode == 0, first.stderr
    files = snapshot(project / "generated")
    assert (project / ".ebpf-gen-cache" / "hello.json").is_file()

    t0 = time.monotonic()
    second = run("generate", cwd=project / "src")  # from a subdirectory: finds pyproject
    elapsed = time.monotonic() - t0
    assert second.returncode == 0 and snapshot(project / "generated") == files
    assert elapsed < 5  # a skip, not a compile (the < 1 s target is measured in bench/)
    assert run("generate", "--check", cwd=project).returncode == 0

    # a header change is an input change
    (project / "src" / "extra.h").write_text("#define EXTRA 1\n")
    src = project / "src" / "hello.bpf.c"
    src.write_text('#include "extra.h"\n' + HELLO)
    assert run("generate", cwd=project).returncode == 0
    files = snapshot(project / "generated")
    (project / "src" / "extra.h").write_text("#define EXTRA 2\nstruct unused { int a; };\n")
    check = run("generate", "--check", cwd=project)
    # the object may or may not change with an unused header change; the check must have run
    assert check.returncode in (0, 1)
    # an output edited by hand is noticed even when inputs are unchanged
    assert run("generate", cwd=project).returncode == 0
    (project / "generated" / "hello.py").write_text("# edited\n")
    check = run("generate", "--check", cwd=project)
    assert check.returncode == 1 and "generated/hello.py" in check.stdout


def test_byte_orders_disagreeing_is_a_layout_error(project: Path) -> None:
    src = project / "src" / "hello.bpf.c"
    src.write_text(HELLO.replace(
        "struct event { __u32 pid; char comm[16]; };",
        "#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__\n"
        "struct event { __u64 pid; char comm[16]; };\n#else\n"
        "struct event { __u32 pid; char comm[16]; };\n#endif\n"
        "struct event *unused_event __attribute__((unused));",
    ))
    proc = run("src/hello.bpf.c", "--", INC, cwd=project)
    assert_failed(proc, "src/hello.bpf.c: type id ", project)
    assert "differs between bpfel and bpfeb" in proc.stderr
