"""trace_pipe: line parsing (unit) and a bpf_printk message read back from the kernel."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ebpf_gen.runtime import TraceRecord, trace_pipe
from ebpf_gen.runtime.trace import parse_line

from .conftest import REPO, require_tool

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_pid = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int say(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	bpf_printk("ebpf-gen trace test %d", 4242);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "            bash-1234    [002] d..31  5024.123456: bpf_trace_printk: hello world\n",
            TraceRecord("bash", 1234, 2, "d..31", 5024.123456, "hello world"),
        ),
        (  # task names may hold dashes and spaces; flags absent on old kernels
            "  kworker/u8:1-ev x-77 [000] 12.5: bpf_trace_printk: a: b",
            TraceRecord("kworker/u8:1-ev x", 77, 0, "", 12.5, "a: b"),
        ),
        (
            "           <...>-5142    [000] ...21   487.737538: bpf_trace_printk: hi 42",
            TraceRecord("<...>", 5142, 0, "...21", 487.737538, "hi 42"),
        ),
        (  # another event type keeps its name in the message
            "  python-9 [001] .... 1.000001: sched_switch: prev_comm=python",
            TraceRecord("python", 9, 1, "....", 1.000001, "sched_switch: prev_comm=python"),
        ),
        (
            "CPU:1 [LOST 3 EVENTS]",
            TraceRecord("", None, None, "", None, "CPU:1 [LOST 3 EVENTS]"),
        ),
    ],
)
def test_parse_line(line: str, expected: TraceRecord) -> None:
    assert parse_line(line) == expected


@pytest.mark.kernel
def test_trace_pipe_times_out_when_quiet() -> None:
    start = time.monotonic()
    # Other tests may print; whatever comes, the iterator must end once the pipe is quiet.
    for _ in trace_pipe(timeout=0.3):
        pass
    assert time.monotonic() - start < 10.0


@pytest.mark.kernel
def test_bpf_printk_comes_back(tmp_path: Path) -> None:
    require_tool("clang")
    src = tmp_path / "tracetest.bpf.c"
    src.write_text(SOURCE)
    proc = subprocess.run(
        [sys.executable, "-m", "ebpf_gen.cli", str(src), "--output-dir", str(tmp_path),
         "--stem", "tracetest_skel", "--", "-I/usr/include/x86_64-linux-gnu"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        skel = importlib.import_module("tracetest_skel")
    finally:
        sys.path.remove(str(tmp_path))
    with open("/proc/self/comm") as f:
        comm = f.read().strip()
    with skel.load(constants={"target_pid": os.getpid()}) as objs:
        objs.programs.say.attach()
        # The kernel records a task's name at its next context switch after an event;
        # trace_pipe looks the name up when the line is read, so sleep before reading.
        os.getppid()
        time.sleep(0.1)
        os.getppid()
        time.sleep(0.1)
        mine = [r for r in trace_pipe(timeout=1.0) if r.pid == os.getpid()]
    assert len(mine) == 2, mine
    for record in mine:
        assert record.message == "ebpf-gen trace test 4242"
        assert record.task == comm
        assert record.cpu is not None and record.cpu >= 0
        assert record.timestamp is not None and record.timestamp > 0
        assert len(record.flags) >= 4
    assert mine[0].timestamp is not None and mine[1].timestamp is not None
    assert mine[1].timestamp - mine[0].timestamp >= 0.09
