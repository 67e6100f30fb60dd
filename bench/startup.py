"""Startup: import + load + attach of a generated skeleton vs BCC compiling the same program.

Each side runs in a fresh child process and reports the time from before its first import
(``ebpf_gen`` skeleton / ``bcc``) to the program attached; the median of N runs is printed
with the ratio. Target: the skeleton is >= 20x faster. BCC runs under /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
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

SKELETON_CHILD = r"""
import os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from benchskel import startbench
objs = startbench.load()
objs.programs.count.attach()
t1 = time.perf_counter()
os.getppid()
assert objs.maps.counts[os.getpid()] == 1
print(t1 - t0)
"""

BCC_CHILD = r"""
import os, sys, time, ctypes as ct
t0 = time.perf_counter()
from bcc import BPF
text = '''
BPF_HASH(counts, u32, u64, 1024);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u64 one = 1, *v = counts.lookup(&pid);
    if (v) __sync_fetch_and_add(v, 1); else counts.update(&pid, &one);
    return 0;
}
'''
b = BPF(text=text)
t1 = time.perf_counter()
os.getppid()
assert b["counts"][ct.c_uint(os.getpid())].value == 1
print(t1 - t0)
"""


def run(cmd: list[str]) -> float:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} child failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    _skel.require_root()
    _skel.ensure_bcc_headers()
    with tempfile.TemporaryDirectory() as tmp:
        _skel.build(Path(tmp), "startbench", SOURCE)
        skel, bcc = [], []
        for _ in range(args.runs):  # interleaved: host noise hits both alike
            skel.append(run([str(_skel.PY), "-c", SKELETON_CHILD, tmp]))
            bcc.append(run([_skel.BCC_PYTHON, "-c", BCC_CHILD]))
    s, b = statistics.median(skel), statistics.median(bcc)
    print(f"{'':28} {'median':>10} {'min':>10}")
    print(f"{'ebpf_gen import+load+attach':28} {s * 1e3:>8.1f}ms {min(skel) * 1e3:>8.1f}ms")
    print(f"{'BCC import+compile+attach':28} {b * 1e3:>8.1f}ms {min(bcc) * 1e3:>8.1f}ms")
    ratio = b / s
    print(f"speedup: {ratio:.1f}x (target >= 20x):", "met" if ratio >= 20 else "NOT met")
    return 0 if ratio >= 20 else 1


if __name__ == "__main__":
    sys.exit(main())
