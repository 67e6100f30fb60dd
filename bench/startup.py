"""Startup: import + load + attach of a generated skeleton vs BCC compiling the same program.

Each side runs in a fresh child process and reports, from before its first import
(``ebpf_gen`` skeleton / ``bcc``) to the program attached, the time spent in each step; the
median of N interleaved runs is printed with the ratio, and the ratio of the best runs.
Target: the skeleton is >= 20x faster. BCC runs under /usr/bin/python3 (where Debian's
python3-bpfcc lives), ours under the venv.

Both children run with bytecode caching on (PYTHONDONTWRITEBYTECODE dropped, caches under a
temporary PYTHONPYCACHEPREFIX, one untimed warm-up run each), as an installed application
would: without .pyc files every run would recompile ebpf_gen from source, which BCC (shipped
with .pyc files) never does.

The in-process times leave out what the interpreter costs before the first import, so that
is printed beside them: ``python -c pass`` for each interpreter, and the time from spawning
the child to the program attached. The venv's interpreter start includes site and the
editable-install finder (which imports pathlib, re, enum, ... before the child runs; those
are then free to the skeleton), so one more row imports the skeleton under ``python -S``
with a plain sys.path, where the runtime pays for every module it needs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _skel

BODY = r"""
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1024);
         __type(key, __u32); __type(value, __u64); } counts SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getppid")
int count(void *ctx)
{
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    __u64 one = 1, *v = bpf_map_lookup_elem(&counts, &pid);
    if (v)
        __sync_fetch_and_add(v, 1);
    else
        bpf_map_update_elem(&counts, &pid, &one, BPF_ANY);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""
SOURCE = "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n" + BODY

# Each child prints perf_counter() readings (CLOCK_MONOTONIC, shared by all processes, so
# the parent can subtract its spawn time): start of the script, after the import, after
# load, after attach; and the names of modules it had to import that site had not.
SKELETON_CHILD = r"""
import os, sys, time
t0 = time.perf_counter()
sys.path[:0] = sys.argv[1:]
before = set(sys.modules)
from benchskel import startbench
t1 = time.perf_counter()
objs = startbench.load()
t2 = time.perf_counter()
objs.programs.count.attach()
t3 = time.perf_counter()
os.getppid()
assert objs.maps.counts[os.getpid()] == 1
print(t0, t1, t2, t3)
print(" ".join(sorted(m for m in set(sys.modules) - before if not m.startswith("benchskel"))))
"""

BCC_CHILD = r"""
import os, sys, time
t0 = time.perf_counter()
before = set(sys.modules)
import ctypes as ct
from bcc import BPF
t1 = time.perf_counter()
text = '''
BPF_HASH(counts, u32, u64, 1024);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u64 one = 1, *v = counts.lookup(&pid);
    if (v) __sync_fetch_and_add(v, 1); else counts.update(&pid, &one);
    return 0;
}
'''
b = BPF(text=text)  # compiles, loads and attaches the TRACEPOINT_PROBE
t3 = time.perf_counter()
os.getppid()
assert b["counts"][ct.c_uint(os.getpid())].value == 1
print(t0, t1, t3, t3)
print(" ".join(sorted(set(sys.modules) - before)))
"""


class Run:
    """One child's timeline, in seconds: spawn -> script start -> import -> load -> attach."""

    def __init__(self, spawn: float, stamps: list[float], modules: list[str]) -> None:
        t0, t1, t2, t3 = stamps
        self.start = t0 - spawn  # interpreter start-up, up to the child's first statement
        self.imports = t1 - t0
        self.load = t2 - t1
        self.attach = t3 - t2
        self.total = t3 - t0  # the measured quantity: first import to attached
        self.wall = t3 - spawn
        self.modules = modules


def run(cmd: list[str], env: dict[str, str]) -> Run:
    spawn = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} child failed:\n{proc.stderr[-2000:]}")
    lines = proc.stdout.splitlines()
    return Run(spawn, [float(x) for x in lines[0].split()], lines[1].split() if lines[1:] else [])


def interpreter_start(python: str, env: dict[str, str], args: list[str], runs: int) -> float:
    """Median wall time of ``python [args] -c pass``: the floor under any child's wall time."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([python, *args, "-c", "pass"], check=True, env=env)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f}ms"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--modules", action="store_true", help="list what each child imported")
    args = p.parse_args()
    _skel.require_root()
    _skel.ensure_bcc_headers()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        _skel.build(work, "startbench", SOURCE)
        # ebpf_gen importable without the editable finder: the package under its own name.
        plain = work / "plain"
        plain.mkdir()
        (plain / "ebpf_gen").symlink_to(_skel.REPO / "gen" / "ebpf_gen", target_is_directory=True)
        sides = {
            "ebpf_gen": [str(_skel.PY), "-c", SKELETON_CHILD, tmp],
            "ebpf_gen -S": [str(_skel.PY), "-S", "-c", SKELETON_CHILD, tmp, str(plain)],
            "BCC": [_skel.BCC_PYTHON, "-c", BCC_CHILD],
        }
        results: dict[str, list[Run]] = {name: [] for name in sides}
        for cmd in sides.values():  # warm-up: writes the bytecode caches, not timed
            run(cmd, env)
        for _ in range(args.runs):  # interleaved: host noise hits all alike
            for name, cmd in sides.items():
                results[name].append(run(cmd, env))
        n = max(args.runs, 15)  # cheap, and the noisiest numbers here
        bases = {
            "venv python -c pass": interpreter_start(str(_skel.PY), env, [], n),
            "venv python -S -c pass": interpreter_start(str(_skel.PY), env, ["-S"], n),
            f"{_skel.BCC_PYTHON} -c pass": interpreter_start(_skel.BCC_PYTHON, env, [], n),
        }

    def med(name: str, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in results[name]))

    print(f"medians of {args.runs} runs; 'measured' = first import to attached (the target)")
    cols = ("start", "imports", "load", "attach", "total", "wall")
    heads = ("interp", "import", "load", "attach", "measured", "spawn->att")
    print(f"{'':12}" + "".join(f"{h:>11}" for h in heads) + f"{'min meas.':>11}")
    for name in sides:
        row = "".join(ms(med(name, c)) for c in cols)
        print(f"{name:12}{row}{ms(min(r.total for r in results[name]))}")
    print("BCC's 'load' column includes compiling; BCC attaches inside BPF(), so attach is 0.")
    for what, t in bases.items():
        print(f"interpreter start, {what}: {t * 1e3:.1f}ms")
    if args.modules:
        for name in sides:
            print(f"{name} imported: {' '.join(results[name][-1].modules)}")
    ours, bcc = med("ebpf_gen", "total"), med("BCC", "total")
    # BCC's long compile soaks up more of a busy host's noise than our few milliseconds do,
    # which flatters the ratio of medians; the ratio of the best runs does not, so the
    # verdict takes the lower of the two.
    best = min(r.total for r in results["BCC"]) / min(r.total for r in results["ebpf_gen"])
    ratio = min(bcc / ours, best)
    plain_ratio = bcc / med("ebpf_gen -S", "total")
    wall_ratio = med("BCC", "wall") / med("ebpf_gen", "wall")
    print(
        f"speedup, first import to attached: {bcc / ours:.1f}x medians, {best:.1f}x best runs "
        f"(target >= 20x):",
        "met" if ratio >= 20 else "NOT met",
    )
    print(
        f"speedup under python -S: {plain_ratio:.1f}x; "
        f"spawn to attached (interpreter start included): {wall_ratio:.1f}x"
    )
    return 0 if ratio >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
