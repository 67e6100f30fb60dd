"""trace_pipe: the kernel trace buffer (bpf_printk output) as parsed records.

A line of trace_pipe looks like::

    python3-12345   [001] d..31  1234.567890: bpf_trace_printk: hello

(task name, pid, cpu, flags, timestamp, then the message). ``trace_fields()`` of BCC splits
it the same way; lines that do not fit (kernel warnings, "CPU:2 [LOST 3 EVENTS]") still
come out, with the whole line as ``message`` and the other fields empty.
"""

from __future__ import annotations

import errno
import os
import re
import select
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

TRACEFS = "/sys/kernel/tracing"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"

# The task name may hold spaces and dashes: the pid is the last "-digits" before the cpu.
# Flags are absent on old kernels ("[001] 1234.5: ...").
_LINE = re.compile(
    r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s:]{4,5})\s+)?(?P<ts>\d+\.\d+):\s+(?P<rest>.*)$"
)
# The event name printk lines carry before the message.
_PRINTK_PREFIXES = ("bpf_trace_printk: ", "bpf_trace_vprintk: ")


@dataclass(frozen=True)
class TraceRecord:
    task: str
    pid: int | None
    cpu: int | None
    flags: str
    timestamp: float | None
    message: str


def parse_line(line: str) -> TraceRecord:
    """Split one trace_pipe line; an unparsable line becomes ``message`` alone."""
    line = line.rstrip("\n")
    m = _LINE.match(line)
    if m is None:
        return TraceRecord("", None, None, "", None, line)
    message = m["rest"]
    for prefix in _PRINTK_PREFIXES:
        if message.startswith(prefix):
            message = message[len(prefix) :]
            break
    return TraceRecord(
        task=m["task"].strip(),
        pid=int(m["pid"]),
        cpu=int(m["cpu"]),
        flags=m["flags"] or "",
        timestamp=float(m["ts"]),
        message=message,
    )


def tracing_dir() -> str:
    """The tracefs directory, mounting tracefs at /sys/kernel/tracing when it is missing."""
    if os.path.exists(os.path.join(TRACEFS, "trace_pipe")):
        return TRACEFS
    if os.path.isdir(TRACEFS):
        proc = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True, text=True
        )
        if proc.returncode == 0 and os.path.exists(os.path.join(TRACEFS, "trace_pipe")):
            return TRACEFS
    if os.path.exists(os.path.join(DEBUGFS_TRACING, "trace_pipe")):
        return DEBUGFS_TRACING
    raise FileNotFoundError(
        errno.ENOENT,
        f"no trace_pipe: tracefs is not mounted at {TRACEFS} and mounting it failed "
        "(mount -t tracefs nodev /sys/kernel/tracing, as root)",
    )


def trace_pipe(timeout: float | None = None) -> Iterator[TraceRecord]:
    """Records from trace_pipe as they come; ends after ``timeout`` seconds without a line.

    Reading trace_pipe consumes what it returns, for every reader on the system.
    """
    path = os.path.join(tracing_dir(), "trace_pipe")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        pending = b""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                wait_ms = None
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                wait_ms = max(1, int(remaining * 1000 + 0.999))
            if not poller.poll(wait_ms):
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                # trace_pipe reports readable with nothing left at times: do not spin.
                time.sleep(0.01)
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                yield parse_line(raw.decode("utf-8", "replace"))
            if lines and timeout is not None:
                deadline = time.monotonic() + timeout
    finally:
        os.close(fd)
