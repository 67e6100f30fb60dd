"""Why the kernel refused an attach: what it lacks, in words, rather than an errno.

Each function returns a sentence, or None when nothing better than the errno is known.
"""

from __future__ import annotations

import errno as E
import os

ENOTSUPP = 524  # the kernel's internal "not supported", which reaches user space as is
LSM_LIST = "/sys/kernel/security/lsm"
CGROUP2_FS = "cgroup2"


def kernel_version() -> tuple[int, int]:
    release = os.uname().release
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def tracing(kind: str, target: str, err: int) -> str | None:
    """fentry/fexit/fmod_ret/tp_btf/freplace/lsm/iter refusals."""
    if kind == "lsm":
        why = bpf_lsm_disabled()
        if why and err != E.EPERM:
            return why
    if kind in ("fentry", "fexit", "fmod_ret", "freplace", "lsm") and err in (
        E.EPERM,
        E.ENOTSUP,
        ENOTSUPP,
        E.EOPNOTSUPP,
    ):
        lsm = bpf_lsm_disabled() if kind == "lsm" else None
        return (
            f"the kernel refused a BPF trampoline for {kind} ({E.errorcode.get(err, err)}) "
            "although this process has the capabilities: this kernel or machine does not "
            "run fentry/fexit/fmod_ret/LSM programs (no CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"
            ", a lockdown or hypervisor policy, or no trampolines on this architecture); "
            "a kprobe or tracepoint is the fallback" + (f"; also: {lsm}" if lsm else "")
        )
    if kind == "fmod_ret" and err == E.EINVAL:
        return (
            f"{target or 'the function'} does not allow fmod_ret: only functions marked "
            "ALLOW_ERROR_INJECTION and security_* hooks can have their return changed"
        )
    if err == E.ENOENT and target:
        return f"{target!r} is not a traceable kernel function or hook on this kernel"
    return None


def bpf_lsm_inactive() -> str | None:
    """A definite "BPF LSM is off" (the LSM list is readable and lacks "bpf"), else None."""
    why = bpf_lsm_disabled()
    return why if why and why.startswith("BPF LSM is not enabled") else None


def bpf_lsm_disabled() -> str | None:
    """Why BPF LSM programs cannot run here, or None when "bpf" is an active LSM."""
    try:
        with open(LSM_LIST) as f:
            active = f.read().strip().split(",")
    except OSError:
        return (
            f"cannot tell whether BPF LSM is enabled: {LSM_LIST} is unreadable "
            "(securityfs not mounted?)"
        )
    if "bpf" in active:
        return None
    return (
        f"BPF LSM is not enabled: the active LSMs are {','.join(active) or 'none'} "
        "(kernel needs CONFIG_BPF_LSM and 'bpf' in the lsm= boot parameter)"
    )


def cgroup2_problem(path: str) -> str | None:
    """Why ``path`` is not a cgroup v2 directory, or None when it is one."""
    if not os.path.isdir(path):
        return f"no such cgroup directory {path}"
    real = os.path.realpath(path)
    best, fstype = "", ""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                mount, fs = fields[4], fields[sep + 1]
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, fs
    except (OSError, ValueError, IndexError):
        return None
    if fstype == CGROUP2_FS:
        return None
    v2 = cgroup2_mounts()
    where = f"cgroup v2 is mounted at {', '.join(v2)}" if v2 else "cgroup v2 is not mounted"
    return f"{path} is not in a cgroup v2 hierarchy (it is on {fstype or '?'}): {where}"


def cgroup2_mounts() -> list[str]:
    out: list[str] = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if "-" in fields and fields[fields.index("-") + 1] == CGROUP2_FS:
                    out.append(fields[4])
    except OSError:
        pass
    return out


def tcx_missing() -> str | None:
    """Why tcx links cannot exist here (kernel < 6.6), or None."""
    if kernel_version() >= (6, 6):
        return None
    return f"tcx needs kernel >= 6.6 (this is {os.uname().release})"
