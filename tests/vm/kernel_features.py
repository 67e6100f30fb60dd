"""Which BPF features each VM-tier kernel has, as probed for real (tests/vm/feature_probe.py:
load, attach and fire) on Debian's stock kernels. tests/vm/test_vm.py fails when a probe
disagrees with this table, so it can't go stale silently.

Kernel-tier tests consult it to EXPECT the failure on a kernel that lacks a feature, rather
than skip:

    from tests.vm.kernel_features import lacks
    if lacks("bpf_loop"):
        with pytest.raises(LoadError): load()
    else:
        load()

Outside the VM tier (EBPF_GEN_VM_KERNEL unset) `lacks()` is False: the host tier assumes
the feature and a missing one shows as a failure there.
"""

from __future__ import annotations

import os

# Upstream introduction, for the reader: kprobe 4.1, perf_event_array 4.4, tracepoint 4.7,
# raw_tp 4.17, ksyscall (libbpf, kprobe on __x64_sys_*) 4.17, tp_btf/fentry/vmlinux BTF 5.5,
# ringbuf 5.8, attach_cookie 5.15, perf_link (kprobe/tracepoint as a BPF link) 5.15,
# bpf_loop 5.17, kprobe_multi 5.18 (needs CONFIG_FPROBE,
# which Debian enables only from trixie's 6.12), tcx 6.6, bpf_lsm 5.7 (CONFIG_BPF_LSM and
# "bpf" in the active LSM list: Debian's CONFIG_LSM names it).
_ALL = ("tracepoint", "raw_tp", "tp_btf", "kprobe", "ksyscall", "kprobe_multi", "fentry",
        "perf_event_array", "ringbuf", "bpf_loop", "attach_cookie", "perf_link",
        "vmlinux_btf", "tcx", "bpf_lsm")


def _without(*missing: str) -> dict[str, bool]:
    return {name: name not in missing for name in _ALL}


FEATURES: dict[str, dict[str, bool]] = {
    # bullseye linux-image-5.10.0-32-amd64: bpf_loop, attach_cookie -> load EINVAL
    # (unknown helper); kprobe_multi -> attach EINVAL (unknown attach type); perf_link ->
    # libbpf falls back to the perf ioctl, so kprobes are no BPF links (bpftool perf, not link).
    # tcx -> link create EINVAL (no such attach type before 6.6): attach_tc falls back to
    # a clsact qdisc and says so. bpf_lsm: CONFIG_BPF_LSM=y but CONFIG_LSM lacks "bpf", so
    # the hook never runs the program (attach_lsm refuses, naming the active LSMs).
    "5.10": _without("kprobe_multi", "bpf_loop", "attach_cookie", "perf_link", "tcx",
                     "bpf_lsm"),
    # bookworm linux-image-6.1.0-50-amd64: CONFIG_FPROBE off -> kprobe_multi EOPNOTSUPP.
    "6.1": _without("kprobe_multi", "tcx"),
    # trixie linux-image-6.12.117+deb13-amd64: everything probed.
    "6.12": _without(),
}


def vm_kernel() -> str | None:
    """The VM-tier kernel series this process runs on, or None on the host."""
    return os.environ.get("EBPF_GEN_VM_KERNEL") or None


def lacks(feature: str) -> bool:
    """True when running in the VM tier on a kernel known to lack `feature`."""
    if feature not in _ALL:
        raise KeyError(f"unknown feature {feature!r}; known: {', '.join(_ALL)}")
    kernel = vm_kernel()
    if kernel is None:
        return False
    return not FEATURES[kernel][feature]
