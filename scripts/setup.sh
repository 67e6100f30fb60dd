#!/usr/bin/env bash
# Install everything ebpf-gen needs on a fresh Debian 12 (bookworm) or 13 (trixie) machine, as
# root: the package names are the same in both (`clang` is clang 14 or 19). Idempotent and
# quiet: installed packages are skipped, the .venv is reused. Called by .ci/run and `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (apt-get install and tracefs need it)"

# What each package is for:
#  clang llvm libbpf-dev linux-libc-dev   compile BPF C (llvm-strip; bpf_helpers.h; asm/types.h);
#                                         clang + libbpf-dev also build bench/map_batch.c
#  libbpf1 bpftool                        the runtime's libbpf.so.1; BTF oracle in tests
#  python3-venv                           the .venv below
#  python3-bpfcc linux-headers-amd64      BCC originals the examples are compared with
#  qemu-system-x86 busybox-static         the VM tier (virtme-ng boots kernels with them)
#  file kmod                              virtme-ng: kernel version detection, depmod
#  linux-image-amd64                      a bookworm kernel for the VM tier
#  ca-certificates                        pip over https
#  gcc libc6-dev                          the tests' second compiler: golden layouts vs gcc,
#                                         a host (non-BPF) object the CLI must reject
#  mount                                  the tests mount their own bpffs (not in a minimal root)
#  systemtap-sdt-dev iproute2             USDT, netns/veth/tc tests (clang builds the probe binary)
packages=(clang llvm libbpf-dev libbpf1 bpftool linux-libc-dev python3-venv python3-bpfcc
          gcc libc6-dev mount
          linux-headers-amd64 linux-image-amd64 qemu-system-x86 busybox-static file kmod
          ca-certificates systemtap-sdt-dev iproute2)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -qq update >/dev/null || die "apt-get update failed"
    if ! apt-get -qq install -y --no-install-recommends "${missing[@]}" >/dev/null; then
        failed=()
        for p in "${missing[@]}"; do
            apt-get -qq install -y --no-install-recommends "$p" >/dev/null 2>&1 || failed+=("$p")
        done
        ((${#failed[@]} == 0)) || die "could not install: ${failed[*]}"
    fi
fi

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv || die "python3 -m venv .venv failed"
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[generator,dev]' \
    || die "pip install -e '.[generator,dev]' failed"
.venv/bin/python -m pip install -q --disable-pip-version-check virtme-ng \
    || die "pip install virtme-ng failed"

if ! mountpoint -q /sys/kernel/tracing; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null \
        || echo "setup: warning: could not mount tracefs at /sys/kernel/tracing" >&2
fi
echo "setup: ok"
