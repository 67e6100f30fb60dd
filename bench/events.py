"""Event drain rate: ebpf_gen's PerfEventArray/RingBuf against BCC, same program, same load.

A producer process calls getppid() in a busy loop for a fixed time; a tracepoint program on
sys_enter_getppid, filtered to the producer's pid, sends one 24-byte event per call through
a perf event array (64 pages per CPU) or a 256 KiB BPF ring buffer. The reader drains it:
ebpf_gen in this process, BCC (open_perf_buffer/open_ring_buffer, a ctypes callback per
event that casts the record to the event struct) under /usr/bin/python3 in a subprocess.
The producer is pinned to one CPU and the reader to another when there are two.

Rows: ebpf_gen's own reader; for perf, the same with bcc's wakeup-per-event policy; ebpf_gen
with libbpf's reader (what weakly ordered CPUs get, see ebpf_gen.runtime.events); bcc.
Printed per buffer kind: events offered/s, drained/s, lost (offered - drained; for perf also
the kernel's PERF_RECORD_LOST count), and our drained rate over BCC's. The offered rate
depends on the reader: a perf wakeup per event (bcc's default, and our wakeup_bytes=0 row)
costs the producer an interrupt per event; our default wakes by watermark.

Usage: bench/events.py [--seconds 3] [--only perf|ring]  (root; sets up BCC's kernel
headers symlink under /lib/modules/$(uname -r) when missing)
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BCC_PYTHON = "/usr/bin/python3"
PAGES = 64
RING_BYTES = PAGES * 4096

LIBBPF_SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event { __u32 pid; __u32 seq; __u64 value; char tag[8]; };

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RING_BYTES);
} ring_events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int perf_out(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (pid != TARGET_PID)
		return 0;
	struct event e = {.pid = pid, .seq = 0, .value = 7};
	bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int ring_out(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (pid != TARGET_PID)
		return 0;
	struct event e = {.pid = pid, .seq = 0, .value = 7};
	bpf_ringbuf_output(&ring_events, &e, sizeof(e), 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

BCC_SRC = r"""
struct event { u32 pid; u32 seq; u64 value; char tag[8]; };
OUTPUT_DECL

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (pid != TARGET_PID)
		return 0;
	struct event e = {.pid = pid, .seq = 0, .value = 7};
	OUTPUT_CALL;
	return 0;
}
"""

# Runs under Debian's python with bcc: load, print "ready", drain until the producer is
# gone, print a JSON result line.
BCC_READER = r"""
import ctypes, json, os, sys, time
from bcc import BPF
kind, pid, src, pages, cpu = sys.argv[1:6]
pid, pages = int(pid), int(pages)
if cpu:
    os.sched_setaffinity(0, {int(cpu)})
b = BPF(text=src)
table = b["events"]
state = {"n": 0, "lost": 0}
def on_event(ctx, data, size):
    table.event(data)
    state["n"] += 1
def on_lost(lost):
    state["lost"] += lost
if kind == "perf":
    table.open_perf_buffer(on_event, page_cnt=pages, lost_cb=on_lost)
    poll = b.perf_buffer_poll
else:
    def on_ring(ctx, data, size):
        table.event(data)
        state["n"] += 1
        return 0
    table.open_ring_buffer(on_ring)
    poll = b.ring_buffer_poll
print("ready", flush=True)
def alive():
    return os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
while alive():
    poll(100)
for _ in range(5):
    poll(20)
print(json.dumps({"received": state["n"], "kernel_lost": state["lost"]}), flush=True)
"""

# The producer: waits for a line on stdin, calls getppid() for the given seconds, prints how
# many calls (= events offered) it made.
PRODUCER = r"""
import os, sys, time
cpu = sys.argv[2]
if cpu:
    os.sched_setaffinity(0, {int(cpu)})
print("waiting", flush=True)
sys.stdin.readline()
getppid, now = os.getppid, time.monotonic
end = now() + float(sys.argv[1])
n = 0
while now() < end:
    for _ in range(1000):
        getppid()
    n += 1000
print(n, flush=True)
"""


@dataclass(frozen=True)
class Result:
    offered: int
    received: int
    kernel_lost: int
    seconds: float

    @property
    def drained_per_s(self) -> float:
        return self.received / self.seconds

    @property
    def lost(self) -> int:
        return self.offered - self.received


class Event(ctypes.Structure):
    _fields_ = [
        ("pid", ctypes.c_uint32),
        ("seq", ctypes.c_uint32),
        ("value", ctypes.c_uint64),
        ("tag", ctypes.c_char * 8),
    ]


def ensure_bcc_headers() -> None:
    """BCC compiles against /lib/modules/$(uname -r)/build: point it at Debian's headers."""
    moddir = Path("/lib/modules") / os.uname().release
    if (moddir / "build").exists():
        return
    if not glob.glob("/usr/src/linux-headers-*-amd64"):
        subprocess.run(["apt-get", "install", "-y", "-q", "linux-headers-amd64"], check=True,
                       stdout=subprocess.DEVNULL)
    build = sorted(glob.glob("/usr/src/linux-headers-*-amd64"))[-1]
    common = build.removesuffix("-amd64") + "-common"
    moddir.mkdir(parents=True, exist_ok=True)
    (moddir / "build").symlink_to(build)
    if not (moddir / "source").exists():
        (moddir / "source").symlink_to(common)


def start_producer(seconds: float, cpu: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", PRODUCER, str(seconds), cpu],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "waiting"
    return proc


def go(producer: subprocess.Popen[str]) -> float:
    assert producer.stdin is not None
    producer.stdin.write("go\n")
    producer.stdin.flush()
    return time.monotonic()


def offered(producer: subprocess.Popen[str]) -> tuple[int, float]:
    assert producer.stdout is not None
    n = int(producer.stdout.readline())
    producer.wait()
    return n, time.monotonic()


def compile_object(pid: int, workdir: Path) -> Path:
    src = workdir / "bench_events.bpf.c"
    src.write_text(LIBBPF_SRC)
    out = workdir / "bench_events.o"
    subprocess.run(
        ["clang", "-O2", "-g", "-target", "bpfel", "-I/usr/include/x86_64-linux-gnu",
         f"-DTARGET_PID={pid}", f"-DRING_BYTES={RING_BYTES}", "-c", str(src), "-o", str(out)],
        check=True,
    )
    return out


def run_ours(
    kind: str, seconds: float, cpus: tuple[str, str], workdir: Path, wakeup_bytes: int | None,
    reader_kind: str = "mmap",
) -> Result:
    from ebpf_gen.runtime.events import PerfEventArray, RingBuf
    from ebpf_gen.runtime.spec import MapKind, MapSpec

    os.environ["EBPF_GEN_EVENT_READER"] = reader_kind  # read when the map opens its reader
    producer = start_producer(seconds, cpus[0])
    loaded = _DirectObject(compile_object(producer.pid, workdir),
                           "perf_out" if kind == "perf" else "ring_out")
    reader: PerfEventArray[Event] | RingBuf[Event]
    if kind == "perf":
        spec = MapSpec("perf_events", MapKind.PERF_EVENT_ARRAY, event=Event)
        reader = PerfEventArray(spec, loaded.map_fd("perf_events"), loaded)
        if wakeup_bytes is not None:
            reader.resize(PAGES, wakeup_bytes)
    else:
        spec = MapSpec("ring_events", MapKind.RINGBUF, event=Event)
        reader = RingBuf(spec, loaded.map_fd("ring_events"), loaded)
    try:
        loaded.attach()
        if cpus[1]:
            os.sched_setaffinity(0, {int(cpus[1])})
        received = 0
        start = go(producer)
        while producer.poll() is None:
            received += len(reader.poll(0.1))
        n, end = offered(producer)
        while batch := reader.poll(0.02):
            received += len(batch)
        return Result(n, received, reader.lost, end - start)
    finally:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
        reader.close()
        loaded.close()
        del os.environ["EBPF_GEN_EVENT_READER"]


def run_bcc(kind: str, seconds: float, cpus: tuple[str, str]) -> Result:
    producer = start_producer(seconds, cpus[0])
    if kind == "perf":
        decl = "BPF_PERF_OUTPUT(events);"
        call = "events.perf_submit(args, &e, sizeof(e))"
    else:
        decl = f"BPF_RINGBUF_OUTPUT(events, {PAGES});"
        call = "events.ringbuf_output(&e, sizeof(e), 0)"
    src = (BCC_SRC.replace("OUTPUT_DECL", decl).replace("OUTPUT_CALL", call)
           .replace("TARGET_PID", str(producer.pid)))
    # stderr to a file: BCC complains from a destructor at exit, noise unless it failed.
    with tempfile.TemporaryFile(mode="w+") as err:
        reader = subprocess.Popen(
            [BCC_PYTHON, "-c", BCC_READER, kind, str(producer.pid), src, str(PAGES), cpus[1]],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )
        assert reader.stdout is not None
        line = reader.stdout.readline().strip()
        if line != "ready":
            producer.kill()
            reader.wait()
            err.seek(0)
            raise SystemExit(f"BCC reader failed to start ({kind}):\n{err.read()}")
        start = go(producer)
        n, end = offered(producer)
        result = json.loads(reader.stdout.readline())
        reader.wait()
    return Result(n, int(result["received"]), int(result["kernel_lost"]), end - start)


class _DirectObject:
    """Open, load and attach one program of an object through libbpf."""

    def __init__(self, path: Path, program: str) -> None:
        from ebpf_gen.runtime import libbpf

        self._lib = lib = libbpf.lib()
        lib.bpf_object__open_file.restype = ctypes.c_void_p
        lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        self._obj = libbpf.check_ptr(lib.bpf_object__open_file(str(path).encode(), None),
                                     f"open {path}")
        prog: Any = None
        while prog := lib.bpf_object__next_program(self._obj, prog):
            lib.bpf_program__set_autoload(prog, lib.bpf_program__name(prog).decode() == program)
        libbpf.check(lib.bpf_object__load(self._obj), f"load {path}")
        self._prog = lib.bpf_object__find_program_by_name(self._obj, program.encode())
        self._link: int | None = None

    def map_fd(self, name: str) -> int:
        return int(self._lib.bpf_map__fd(self._lib.bpf_object__find_map_by_name(
            self._obj, name.encode())))

    def attach(self) -> None:
        from ebpf_gen.runtime import libbpf

        self._link = libbpf.check_ptr(self._lib.bpf_program__attach(self._prog), "attach")

    def close(self) -> None:
        if self._link:
            self._lib.bpf_link__destroy(self._link)
        self._lib.bpf_object__close(self._obj)


def lost_pct(r: Result) -> float:
    return 100.0 * r.lost / r.offered if r.offered else 0.0


def report(kind: str, rows: list[tuple[str, Result]]) -> None:
    print(f"{kind}:")
    for who, r in rows:
        kl = f", kernel-reported {r.kernel_lost:,}" if kind == "perf" else ""
        print(f"  {who:22s} offered {r.offered / r.seconds / 1e3:6.0f}k/s  drained "
              f"{r.drained_per_s / 1e3:6.0f}k/s  lost {r.lost:>10,} ({lost_pct(r):4.1f}%){kl}")
    bcc = rows[-1][1]
    for who, r in rows[:-1]:
        ratio = r.drained_per_s / bcc.drained_per_s if bcc.drained_per_s else float("inf")
        print(f"  {who:22s} / bcc: drained {ratio:5.2f}x, lost {lost_pct(r):4.1f}% vs "
              f"{lost_pct(bcc):4.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--only", choices=("perf", "ring"))
    ap.add_argument("--wakeup-bytes", type=int, default=None)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/events.py: needs root (bpf(), perf_event_open)")
    ensure_bcc_headers()
    ncpu = len(os.sched_getaffinity(0))
    cpus = ("0", "1") if ncpu >= 2 else ("", "")
    print(f"{ncpu} CPUs; producer on cpu {cpus[0] or 'any'}, reader on cpu {cpus[1] or 'any'}; "
          f"{args.seconds:g}s per run, perf {PAGES} pages/CPU, ring {RING_BYTES // 1024} KiB")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("perf", "ring"):
            if args.only and kind != args.only:
                continue
            rows = [("ebpf_gen", run_ours(kind, args.seconds, cpus, Path(tmp),
                                          args.wakeup_bytes))]
            if kind == "perf" and args.wakeup_bytes is None:
                # bcc's wakeup policy (one per event), to compare the readers alone.
                rows.append(("ebpf_gen wakeup/event",
                             run_ours(kind, args.seconds, cpus, Path(tmp), 0)))
            # libbpf's reader, which weakly ordered CPUs get (a callback per record, like bcc).
            rows.append(("ebpf_gen libbpf reader",
                         run_ours(kind, args.seconds, cpus, Path(tmp), args.wakeup_bytes,
                                  reader_kind="libbpf")))
            rows.append(("bcc", run_bcc(kind, args.seconds, cpus)))
            report(kind, rows)


if __name__ == "__main__":
    main()
