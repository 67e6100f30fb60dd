"""Errors that point the right way: the kernel refusing, verifier limits, trace_pipe's
permissions, libbpf's own lines (unit helpers first, then the real kernel)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from ebpf_gen.runtime import KernelRefusedError, LoadError
from ebpf_gen.runtime.objects import verifier_verdict

from .conftest import need

REPO = Path(__file__).resolve().parent.parent


def generate(tmp_path: Path, stem: str, source: str) -> ModuleType:
    src = tmp_path / f"{stem}.bpf.c"
    src.write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "ebpf_gen.cli", "-q", str(src), "--output-dir", str(tmp_path),
         "--stem", stem], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(stem)
    finally:
        sys.path.remove(str(tmp_path))


def test_verifier_verdict_names_the_limit() -> None:
    log = ("13: (0f) r1 += r0\nBPF program is too large. Processed 1000001 insn\n"
           "processed 1000001 insns (limit 1000000) max_states_per_insn 4 total_states 9618\n")
    assert verifier_verdict(log) == (
        "BPF program is too large: the verifier gave up after 1000001 instructions (its "
        "limit is 1000000); bound the loop (a constant trip count, or bpf_loop())")
    assert verifier_verdict("0: (b7) r0 = 0\ninfinite loop detected at insn 3\n") == \
        "infinite loop detected at insn 3"
    assert verifier_verdict("R1 invalid mem access 'scalar'\nprocessed 3 insns\n") == ""


FENTRY = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
SEC("fentry/do_unlinkat")
int BPF_PROG(on_unlink) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.kernel
@pytest.mark.nokprobe  # the host tier: this host's kernel refuses fentry with EPERM
def test_eperm_with_every_capability_is_the_kernel_refusing(tmp_path: Path) -> None:
    skel = generate(tmp_path, "refused_skel", FENTRY)
    try:
        with skel.load():
            pass
    except KernelRefusedError as e:
        assert isinstance(e, LoadError) and not isinstance(e, PermissionError)
        assert e.errno == 1 and e.program == "on_unlink" and e.program_type == "tracing"
        lockdown = Path("/sys/kernel/security/lockdown")
        if lockdown.exists():
            assert e.lockdown in lockdown.read_text()
        else:
            assert e.lockdown == "" and "lockdown: unknown" in str(e)
        assert str(e).startswith(
            "refused_skel: loading program 'on_unlink' failed: the kernel refused it (EPERM) "
            "although this process has CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN: not a missing "
            "capability, this kernel forbids tracing programs (SEC(\"fentry/do_unlinkat\"))")
    else:
        need("this kernel loads fentry programs: no refusal to diagnose")


RUNAWAY = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
__u64 sum = 0;
SEC("tracepoint/syscalls/sys_enter_getppid")
int runaway(void *ctx)
{
    __u32 n = bpf_get_prandom_u32();
    for (__u32 i = 0; i < n; i++)  /* no bound the verifier can see */
        sum += i * bpf_get_prandom_u32();
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.kernel
def test_a_runaway_loop_is_named_not_enospc(tmp_path: Path) -> None:
    skel = generate(tmp_path, "runaway_skel", RUNAWAY)
    with pytest.raises(LoadError) as info:
        skel.load()
    e = info.value
    first = str(e).splitlines()[0]
    assert "No space left on device" not in first
    release = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    if release >= (6, 4):  # the log keeps its end when it overflows: the verdict is there
        assert first.startswith(
            "runaway_skel: loading program 'runaway' failed: rejected by the verifier: BPF "
            "program is too large: the verifier gave up after ")
        assert "BPF program is too large. Processed" in e.log
    else:  # the log keeps its start: the verdict is lost, and the message says that
        assert first.startswith(
            "runaway_skel: loading program 'runaway' failed: the verifier log overflowed 16 "
            "MiB before the verdict")


@pytest.mark.kernel
def test_libbpf_lines_go_to_logging_not_stderr(tmp_path: Path) -> None:
    """Without logging configured nothing of libbpf's reaches stderr (the error quotes it);
    with a handler on ebpf_gen.libbpf, its warnings arrive there."""
    src = tmp_path / "app.py"
    src.write_text(
        "import sys\nsys.path.insert(0, sys.argv[1])\nimport refused_skel as s\n"
        "if len(sys.argv) > 2:\n    import logging\n"
        "    logging.basicConfig(format='LOG %(name)s %(message)s')\n"
        "try:\n    s.load()\nexcept Exception as e:\n    print(type(e).__name__)\n")
    generate(tmp_path, "refused_skel", FENTRY.replace("fentry/do_unlinkat", "fentry/no_such_fn"))
    quiet = subprocess.run([sys.executable, str(src), str(tmp_path)], capture_output=True,
                           text=True, timeout=120)
    assert quiet.stdout.strip() in ("LoadError", "ObjectFileError", "KernelRefusedError")
    assert quiet.stderr == ""
    logged = subprocess.run([sys.executable, str(src), str(tmp_path), "log"],
                            capture_output=True, text=True, timeout=120)
    assert "LOG ebpf_gen.libbpf libbpf: " in logged.stderr


@pytest.mark.kernel
def test_trace_pipe_as_a_user_says_permission() -> None:
    """As nobody (setpriv), trace_pipe() says permission denied, not 'not mounted'."""
    setpriv = shutil.which("setpriv")
    need(None if setpriv else "setpriv (util-linux) not installed")
    python = "/usr/bin/python3"  # the venv's interpreter may live where nobody cannot read
    need(None if os.access(python, os.X_OK) else f"{python} missing")
    with tempfile.TemporaryDirectory() as d:  # a copy of the runtime that nobody can read
        shutil.copytree(REPO / "gen" / "ebpf_gen" / "runtime", Path(d) / "ebpf_gen" / "runtime")
        (Path(d) / "ebpf_gen" / "__init__.py").write_text("")
        for p in [Path(d), *Path(d).rglob("*")]:
            p.chmod(0o755)
        code = ("from ebpf_gen.runtime.trace import trace_pipe\n"
                "try:\n    next(trace_pipe(0.1))\nexcept OSError as e:\n"
                "    print(type(e).__name__, e.errno, e.strerror)\n")
        proc = subprocess.run(
            [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "env",
             f"PYTHONPATH={d}", python, "-c", code],
            capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("PermissionError 13 permission denied: tracefs is there, but "
                           "reading trace_pipe needs root (run as root, or give this user "
                           "access to the tracefs directory)\n")
