"""perf_event programs: open a perf event per CPU (perf_event_open) and attach to each.

The events are opened here (libbpf takes an already open perf event fd), each link closes
its event, and the links of one call are one LinkGroup.
"""

from __future__ import annotations

import ctypes
import errno as E
import os
import struct

from . import libbpf
from .errors import AttachError
from .links import Link, LinkGroup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .programs import Program

DEFAULT_FREQUENCY = 99  # Hz: off the kernel's 100/250/1000 Hz ticks, as perf and bcc do
PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE = 0, 1
SYS_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "ppc64le": 319,
                       "s390x": 331, "armv7l": 364}
PERF_FLAG_FD_CLOEXEC = 1 << 3
ATTR_FLAG_DISABLED, ATTR_FLAG_FREQ = 1 << 0, 1 << 10
ATTR_SIZE = 64  # PERF_ATTR_SIZE_VER0: every kernel takes it
EVENTS: dict[str, tuple[int, int]] = {
    "cpu-clock": (PERF_TYPE_SOFTWARE, 0),
    "task-clock": (PERF_TYPE_SOFTWARE, 1),
    "page-faults": (PERF_TYPE_SOFTWARE, 2),
    "context-switches": (PERF_TYPE_SOFTWARE, 3),
    "cpu-migrations": (PERF_TYPE_SOFTWARE, 4),
    "cpu-cycles": (PERF_TYPE_HARDWARE, 0),
    "instructions": (PERF_TYPE_HARDWARE, 1),
    "cache-references": (PERF_TYPE_HARDWARE, 2),
    "cache-misses": (PERF_TYPE_HARDWARE, 3),
    "branch-instructions": (PERF_TYPE_HARDWARE, 4),
    "branch-misses": (PERF_TYPE_HARDWARE, 5),
}


def online_cpus() -> list[int]:
    """CPUs listed in /sys/devices/system/cpu/online ("0-3,5")."""
    with open("/sys/devices/system/cpu/online") as f:
        text = f.read().strip()
    cpus: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def _attr(kind: int, config: int, frequency: int | None, period: int | None) -> bytes:
    flags = ATTR_FLAG_FREQ if frequency is not None else 0
    sample = frequency if frequency is not None else period
    # type, size, config, sample_period|freq, sample_type, read_format, flag bits, then
    # wakeup_events, bp_type, config1 (zero).
    return struct.pack("=IIQQQQQIIQ", kind, ATTR_SIZE, config, sample, 0, 0, flags, 0, 0, 0)


def _open(attr: bytes, pid: int, cpu: int) -> int:
    nr = SYS_PERF_EVENT_OPEN.get(os.uname().machine)
    if nr is None:
        raise AttachError(f"perf_event_open: unknown syscall number on {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = int(
        libc.syscall(
            ctypes.c_long(nr),
            buf,
            ctypes.c_int(pid),
            ctypes.c_int(cpu),
            ctypes.c_int(-1),
            ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC),
        )
    )
    return fd if fd >= 0 else -(ctypes.get_errno() or E.EINVAL)


def attach(
    program: Program,
    event: str | tuple[int, int],
    frequency: int | None,
    period: int | None,
    cpu: int | None,
    pid: int,
) -> LinkGroup:
    if isinstance(event, str):
        if event not in EVENTS:
            raise ValueError(f"unknown perf event {event!r}; known: {', '.join(EVENTS)}")
        kind, config = EVENTS[event]
        name = event
    else:
        kind, config = event
        name = f"perf event type {kind} config {config}"
    if frequency is not None and period is not None:
        raise ValueError("give frequency or period, not both")
    if frequency is None and period is None:
        frequency = DEFAULT_FREQUENCY
    for what, value in (("frequency", frequency), ("period", period)):
        if value is not None and not 0 < value < 1 << 63:
            raise ValueError(f"perf event {what} must be positive, not {value}")
    cpus = online_cpus() if cpu is None else [cpu]
    rate = f"{frequency} Hz" if frequency is not None else f"every {period} events"
    where = "every CPU" if cpu is None else f"CPU {cpu}"
    target = f"{name} at {rate} on {where}" + (f" for pid {pid}" if pid != -1 else "")
    prog = program._prog(target)
    attr = _attr(kind, config, frequency, period)
    links: list[Link] = []
    try:
        for c in cpus:
            fd = _open(attr, pid, c)
            if fd < 0:
                raise program._fail(target, -fd, _why(-fd, name, kind, c))
            opts = libbpf.BpfPerfEventOpts(sz=ctypes.sizeof(libbpf.BpfPerfEventOpts))
            ptr = libbpf.lib().bpf_program__attach_perf_event_opts(prog, fd, ctypes.byref(opts))
            if not ptr:
                err = ctypes.get_errno() or E.EINVAL
                os.close(fd)
                why = None
                if err == E.EINVAL and program.type != 7:
                    why = f"section {program.section!r} is not a perf_event program"
                raise program._fail(target, err, why)
            links.append(Link(ptr, program, f"{name} on CPU {c}"))  # destroying closes fd
    except BaseException:
        for link in links:
            link.close()
        raise
    return LinkGroup(links, program, target)


def _why(err: int, name: str, kind: int, cpu: int) -> str | None:
    if err == E.ENOENT and kind == PERF_TYPE_HARDWARE:
        return f"this machine has no hardware event {name} (a VM without a PMU?): use cpu-clock"
    if err == E.ENODEV:
        return f"CPU {cpu} cannot count {name}"
    if err == E.EACCES or err == E.EPERM:
        try:
            with open("/proc/sys/kernel/perf_event_paranoid") as f:
                level = f.read().strip()
        except OSError:
            level = "?"
        return f"perf_event_open refused (perf_event_paranoid is {level}; needs CAP_PERFMON)"
    if err == E.EINVAL and kind == PERF_TYPE_SOFTWARE:
        return "the kernel rejected the sample frequency (above kernel.perf_event_max_sample_rate?)"
    return None
