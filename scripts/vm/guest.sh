#!/bin/sh
# Runs inside the virtme-ng guest (the host's filesystem, read-only, at the same paths).
# guest.sh OUT_DIR KERNEL [pytest args...]: results land in OUT_DIR (a --rwdir share).
set -u
out="$1"; kernel="$2"; shift 2
cd "$(dirname "$0")/../.." || exit 97

mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
# The LSM list (BPF LSM diagnosis) and cgroup v2 (cgroup program tests).
mountpoint -q /sys/kernel/security || mount -t securityfs nodev /sys/kernel/security
grep -q cgroup2 /proc/mounts || mount -t cgroup2 nodev /sys/fs/cgroup
mkdir -p /run/netns
# 5.10 still charges BPF maps to RLIMIT_MEMLOCK (memcg accounting came in 5.11).
ulimit -l unlimited

export EBPF_GEN_VM_KERNEL="$kernel"
# The log is read on the host while the guest runs, and after a hang: no stdio buffering.
export PYTHONUNBUFFERED=1
# Bytecode caches in the guest's own /tmp (the shared tree is read-only): without them
# every app and test process recompiles ebpf_gen under emulation, seconds per start.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/ebpf-gen-pycache
# Skeletons the host built (scripts/vmtest.py prewarm_skeletons): no clang under emulation.
export EBPF_GEN_SKELETON_CACHE="$PWD/.vm/skeletons"
uname -r >"$out/uname"
.venv/bin/python tests/vm/feature_probe.py "$out/features-build" >"$out/features.json" \
    2>"$out/features.err"
# The selection (tests/vm/guest_selection.py): kprobe tests, the runtime's kernel tier and
# the kprobe/fentry example twins.
# -v: the log shows each test as it finishes, so a run cut short still says where.
.venv/bin/python -m pytest -p tests.vm.guest_selection -m "kernel or kprobe" \
    -p no:cacheprovider -v -rfEs --durations=15 --junitxml="$out/junit.xml" \
    tests/test_vm_probe.py tests/test_examples.py tests/vm/test_bcc_parity.py \
    tests/test_runtime_load.py tests/test_runtime_maps.py tests/test_runtime_events.py \
    tests/test_runtime_programs.py tests/test_runtime_batch.py tests/test_runtime_kinds.py \
    tests/test_runtime_pinning.py tests/test_runtime_variables.py tests/test_runtime_net.py \
    tests/test_runtime_attach.py tests/test_runtime_tracing.py tests/test_examples_tracing.py \
    "$@" >"$out/pytest.log" 2>&1
echo $? >"$out/rc"
