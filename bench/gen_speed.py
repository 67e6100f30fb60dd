"""Generator speed, side by side with bpftool in one run.

(a) Decoding /sys/kernel/btf/vmlinux in-process vs ``bpftool btf dump file vmlinux format c``
    (wall time of the whole bpftool process). Target: ratio <= 3.
(c) ``ebpf-gen vmlinux -o FILE`` (the C header, from ebpf-gen's own BTF model) vs ``bpftool
    btf dump file vmlinux format c > FILE``: process time of each whole command. Target: <= 3.
(b) Generating a skeleton from a compiled object: process time (user+sys) of
    ``python -m ebpf_gen.cli --object X`` vs ``bpftool gen skeleton X``. Target: < 150 ms.
(d) Generating from source (both byte orders, every default architecture): wall time of
    ``ebpf-gen SRC`` against the same command with ``--jobs 1`` (its steps one after another;
    target <= 0.6x) and against one bare ``clang -target bpf -O2 -g -c SRC`` (target <= 1.3x
    where that compile takes >= 0.5 s: a CO-RE tool on a full vmlinux.h; the small examples
    are shown too, where the interpreter's start dominates).

The host is shared (two cores), so each number is the median of N runs and CPU time is shown
next to wall time where it applies.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"
VMLINUX = Path("/sys/kernel/btf/vmlinux")
CFLAGS = ["-O2", "-g", "-target", "bpfel", "-D__TARGET_ARCH_x86",
          "-I/usr/include/x86_64-linux-gnu"]


def median_of(n: int, run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(n))


def child_cpu(cmd: list[str], **kw: object) -> tuple[float, float]:
    """(wall, user+sys) seconds of one child process, from wait4's rusage."""
    start = time.perf_counter()
    kw.setdefault("stdout", subprocess.DEVNULL)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, **kw)  # type: ignore[call-overload]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr}")
    return wall, usage.ru_utime + usage.ru_stime


def bench_vmlinux(n: int) -> None:
    print("(a) decode of /sys/kernel/btf/vmlinux vs bpftool btf dump ... format c")
    if not VMLINUX.exists():
        print("    skipped: this kernel has no /sys/kernel/btf/vmlinux")
        return
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        print("    skipped: bpftool not installed")
        return
    sys.path.insert(0, str(REPO))
    from ebpf_gen.btf.decode import decode_btf

    def ours(lazy: bool) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.process_time()
        spec = decode_btf(VMLINUX.read_bytes(), where=str(VMLINUX), lazy=lazy)
        w1, c1 = time.perf_counter(), time.process_time()
        assert len(spec) > 1000
        return w1 - w0, c1 - c0

    # Interleaved, so drift on a shared host hits all three alike.
    runs: dict[str, list[tuple[float, float]]] = {"lazy": [], "eager": [], "bpftool": []}
    for _ in range(n):
        runs["lazy"].append(ours(True))
        runs["eager"].append(ours(False))
        runs["bpftool"].append(
            child_cpu([bpftool, "btf", "dump", "file", str(VMLINUX), "format", "c"]))
    wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
    rows = (("lazy", "decode_btf (default)", "every record read and checked; members and "
             "parameters built on first read"),
            ("eager", "decode_btf(lazy=False)", "every object built up front"),
            ("bpftool", "bpftool format c", "parse, then print every type as C"))
    for key, label, what in rows:
        print(f"    {label:23} wall {wall[key] * 1e3:7.1f} ms   cpu {cpu[key] * 1e3:7.1f} ms"
              f"   {what}")
    ratio = wall["lazy"] / wall["bpftool"]
    print(f"    ratio (wall) {ratio:.2f}x, lazy=False {wall['eager'] / wall['bpftool']:.2f}x   "
          f"ratio (cpu) {cpu['lazy'] / cpu['bpftool']:.2f}x   "
          f"target <= 3.00x: {'ok' if ratio <= 3 else 'MISSED'}")


def objects(workdir: Path) -> list[Path]:
    sources = sorted((REPO / "examples").glob("*.bpf.c")) or sorted(
        (REPO / "tests" / "btf_snippets").glob("*.bpf.c"))
    built = []
    for src in sources:
        obj = workdir / (src.name.removesuffix(".bpf.c") + ".o")
        proc = subprocess.run(["clang", *CFLAGS, "-c", str(src), "-o", str(obj)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"    {src.name}: clang failed, left out:\n{proc.stderr}")
            continue
        built.append(obj)
    return built


def bench_objects(n: int) -> None:
    print("(b) skeleton generation per object: process time (user+sys) of the child")
    if importlib.util.find_spec("ebpf_gen.cli") is None:
        print("    not available yet: ebpf_gen.cli is missing")
        return
    bpftool = shutil.which("bpftool")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        objs = objects(workdir)
        print(f"    {'object':<24}{'ebpf-gen cpu':>14}{'wall':>10}{'bpftool cpu':>14}"
              f"{'ratio':>8}  target < 150 ms")
        # Measured as an installed tool runs: with bytecode caches (pip compiles them at
        # install). This machine's environment sets PYTHONDONTWRITEBYTECODE, which would
        # make every run compile ebpf_gen's sources from scratch; a private cache dir and
        # one untimed warm-up run give the installed condition without touching the tree.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
        for obj in objs:
            out = workdir / f"out_{obj.stem}"
            out.mkdir()
            cmd = [str(PY), "-m", "ebpf_gen.cli", "--object", str(obj), "--output-dir", str(out)]
            child_cpu(cmd, cwd=REPO, env=env)
            ours = [child_cpu(cmd, cwd=REPO, env=env) for _ in range(n)]
            cpu = statistics.median(r[1] for r in ours)
            wall = statistics.median(r[0] for r in ours)
            if bpftool:
                theirs = statistics.median(
                    child_cpu([bpftool, "gen", "skeleton", str(obj)])[1] for _ in range(n))
                their_txt, ratio = f"{theirs * 1e3:11.1f} ms", f"{cpu / theirs:7.1f}x"
            else:
                their_txt, ratio = f"{'n/a':>14}", f"{'':>8}"
            verdict = "ok" if cpu < 0.150 else "MISSED"
            print(f"    {obj.name:<24}{cpu * 1e3:11.1f} ms{wall * 1e3:7.1f} ms{their_txt}"
                  f"{ratio}  {verdict}")


def bench_header(n: int) -> None:
    print("(c) vmlinux.h: ebpf-gen vmlinux vs bpftool btf dump ... format c (whole processes)")
    bpftool = shutil.which("bpftool")
    if not VMLINUX.exists() or bpftool is None:
        print("    skipped: needs /sys/kernel/btf/vmlinux and bpftool")
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")  # as installed: cached .pyc
        ours_cmd = [str(PY), "-m", "ebpf_gen.cli", "vmlinux", "-q", "-o", f"{tmp}/ours.h"]
        child_cpu(ours_cmd, env=env)  # warm-up: bytecode compiled once, untimed
        runs: dict[str, list[tuple[float, float]]] = {"ours": [], "bpftool": []}
        for _ in range(n):  # interleaved: drift on a shared host hits both alike
            runs["ours"].append(child_cpu(ours_cmd, env=env))
            with open(f"{tmp}/bpftool.h", "w") as out:
                runs["bpftool"].append(child_cpu(
                    [bpftool, "btf", "dump", "file", str(VMLINUX), "format", "c"], stdout=out))
    wall = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r[1] for r in v) for k, v in runs.items()}
    for key, label in (("ours", "ebpf-gen vmlinux"), ("bpftool", "bpftool format c")):
        print(f"    {label:23} wall {wall[key] * 1e3:7.1f} ms   cpu {cpu[key] * 1e3:7.1f} ms")
    ratio = cpu["ours"] / cpu["bpftool"]
    print(f"    ratio (cpu) {ratio:.2f}x   ratio (wall) {wall['ours'] / wall['bpftool']:.2f}x   "
          f"target <= 3.00x: {'ok' if ratio <= 3 else 'MISSED'}")


def _from_source_cases(tmp: Path) -> list[tuple[str, Path]]:
    """Small examples, and a CO-RE tool on a full vmlinux.h (bpftool's, else ours)."""
    cases = [(name, REPO / "examples" / f"{name}.bpf.c") for name in ("hello", "runqlat",
                                                                       "uretprobe")]
    core = Path(tmp) / "core"
    core.mkdir()
    shutil.copy(REPO / "tests" / "corpus" / "core_task.bpf.c", core)
    bpftool = shutil.which("bpftool")
    with open(core / "vmlinux.h", "w") as out:
        if bpftool and VMLINUX.exists():
            subprocess.run([bpftool, "btf", "dump", "file", str(VMLINUX), "format", "c"],
                           stdout=out, check=True)
        else:
            subprocess.run([str(PY), "-m", "ebpf_gen.cli", "vmlinux", "-q", "-o", "-"],
                           stdout=out, check=True)
    cases.append(("core_task (vmlinux.h)", core / "core_task.bpf.c"))
    return cases


def bench_from_source(n: int) -> None:
    print("(d) from source: ebpf-gen SRC (parallel) vs --jobs 1 (serial steps) vs bare clang; "
          f"wall, median of {n}")
    if importlib.util.find_spec("ebpf_gen.cli") is None or shutil.which("clang") is None:
        print("    skipped: needs ebpf_gen.cli and clang")
        return
    sys.path.insert(0, str(REPO / "gen"))
    from ebpf_gen.compile import INCLUDE_FLAGS, multiarch_include_flags

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONDONTWRITEBYTECODE", "EBPF_GEN_JOBS")}
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")  # as installed: cached .pyc
        print(f"    {'source':<24}{'ebpf-gen':>10}{'--jobs 1':>10}{'ratio':>7}"
              f"{'clang':>9}{'ratio':>7}  targets: <= 0.60x serial, <= 1.30x clang (>= 0.5 s)")
        for label, src in _from_source_cases(Path(tmp)):
            out = Path(tmp) / "out"
            gen = [str(PY), "-m", "ebpf_gen.cli", str(src), "--no-config", "-q",
                   "--output-dir", str(out)]
            # the same include flags ebpf-gen adds (its own header dir, the multiarch dir)
            bare = ["clang", "-target", "bpf", "-O2", "-g", "-D__TARGET_ARCH_x86",
                    *INCLUDE_FLAGS, *multiarch_include_flags(), "-c", str(src),
                    "-o", str(Path(tmp) / "bare.o")]
            child_cpu(gen, cwd=src.parent, env=env)  # warm-up: bytecode, page cache
            runs: dict[str, list[float]] = {"par": [], "ser": [], "clang": []}
            for _ in range(n):  # interleaved: drift on a shared host hits all alike
                runs["par"].append(child_cpu(gen, cwd=src.parent, env=env)[0])
                runs["ser"].append(child_cpu([*gen, "--jobs", "1"], cwd=src.parent,
                                             env=env)[0])
                runs["clang"].append(child_cpu(bare, cwd=src.parent)[0])
            par, ser, cc = (statistics.median(runs[k]) for k in ("par", "ser", "clang"))
            r_ser, r_cc = par / ser, par / cc
            verdict = "ok" if r_ser <= 0.6 else "MISSED serial"
            if cc >= 0.5:
                verdict += ", ok" if r_cc <= 1.3 else ", MISSED clang"
            else:
                verdict += ", clang < 0.5 s (not a target)"
            print(f"    {label:<24}{par:9.2f}s{ser:9.2f}s{r_ser:6.2f}x{cc:8.2f}s{r_cc:6.2f}x"
                  f"  {verdict}")
    print(f"    load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=7, help="runs per measurement (median)")
    ap.add_argument("--source-runs", type=int, default=3,
                    help="runs per from-source measurement (median; each is seconds long)")
    ap.add_argument("--only", choices=("vmlinux", "header", "objects", "source"),
                    help="run one section")
    args = ap.parse_args()
    sections: dict[str, Callable[[], None]] = {
        "vmlinux": lambda: bench_vmlinux(args.n),
        "header": lambda: bench_header(args.n),
        "objects": lambda: bench_objects(args.n),
        "source": lambda: bench_from_source(args.source_runs),
    }
    for name, run in sections.items():
        if args.only in (None, name):
            run()


if __name__ == "__main__":
    main()
