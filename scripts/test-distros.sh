#!/usr/bin/env bash
# make test-distros: setup, the unit tier and the host-kernel tier of a clean clone of HEAD in a
# pristine root of the other supported Debian suite, so every CI run tests both toolchains:
#   Debian 12 bookworm: clang 14, Python 3.11, libbpf 1.1
#   Debian 13 trixie:   clang 19, Python 3.13, libbpf 1.5
# On a bookworm host (CI's machine) it tests trixie; on a trixie host (for example inside
# `FRESH_SUITE=trixie ../shared/fresh-machine`, which runs .ci/run in a trixie root) it tests
# bookworm. DISTRO_SUITE=NAME overrides the choice.
#
# The root comes from Debian's packages alone (mmdebstrap) plus git, make and ca-certificates:
# what a user needs to clone and type `make`. The base root is built once (~90 s) and cached as
# a tarball in /var/tmp/ebpf-gen-distros/; each run unpacks its own copy and removes it after.
# The chroot shares this kernel, so bpf(), tracefs, bpffs and cgroup v2 work inside it as root.
# The kernel tier runs under the host's kernel-tier lock (tracepoints and trace_pipe are global).
# Run inside another pristine root (fresh-machine), /tmp is that root's own, so the lock there
# orders only the runs inside it: excluding the host's other users is up to whoever started it.
set -euo pipefail
top=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
cache=/var/tmp/ebpf-gen-distros
lock=/tmp/ebpf-gen-kernel.lock

die() { echo "test-distros: $*" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "run as root (mmdebstrap, chroot, mounts, the kernel tier)"

host=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [[ -n ${DISTRO_SUITE:-} ]]; then
    suite=$DISTRO_SUITE
elif [[ $host == trixie ]]; then
    suite=bookworm
else
    suite=trixie
fi

mkdir -p "$cache"
base=$cache/$suite.tar
if [[ ! -s $base ]]; then
    if ! command -v mmdebstrap >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get -qq update >/dev/null && apt-get -qq install -y mmdebstrap >/dev/null \
            || die "could not install mmdebstrap"
    fi
    echo "test-distros: building a Debian $suite base root (once, cached in $cache)" >&2
    mmdebstrap --quiet --format=tar --variant=apt --include=git,make,ca-certificates \
        "$suite" "$base.$$" >&2 || { rm -f "$base.$$"; die "mmdebstrap $suite failed"; }
    mv "$base.$$" "$base"
fi

root=$cache/root.$$
cleanup() {
    local m
    for m in $(findmnt -rn -o TARGET | grep "^$root/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
    if findmnt -rn -o TARGET | grep -q "^$root/"; then
        echo "test-distros: mounts remain under $root; not removing it" >&2
    else
        rm -rf --one-file-system "$root"
    fi
}
trap cleanup EXIT
mkdir -p "$root"
tar -xf "$base" -C "$root"

# What every process here gets: name resolution, the registry configuration (pip's config and
# the local wheel folders it names) and the CA bundle.
cp /etc/resolv.conf "$root/etc/resolv.conf"
[[ -f /etc/pip.conf ]] && cp /etc/pip.conf "$root/etc/pip.conf"
[[ -d /etc/xdg/pip ]] && mkdir -p "$root/etc/xdg" && cp -a /etc/xdg/pip "$root/etc/xdg/"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
if [[ -d /opt ]]; then mkdir -p "$root/opt" && mount --rbind /opt "$root/opt" && mount --make-rslave "$root/opt"; fi
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"

# A clean clone of the committed HEAD, as CI makes it: uncommitted edits are not tested.
git clone -q "$top" "$root/srv/project"
git -C "$root/srv/project" checkout -q --detach "$(git -C "$top" rev-parse HEAD)"

envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
      CI=true TERM=dumb)
for v in $(env | grep -oE '^PIP_[A-Z_]+' || true); do envs+=("$v=${!v}"); done
inside() { env -i "${envs[@]}" chroot "$root" /bin/bash -c "cd /srv/project && $1"; }

echo "test-distros: Debian $suite: setup and the unit tier" >&2
inside 'bash scripts/setup.sh && .venv/bin/python --version && clang --version | head -1 &&
        dpkg-query -W -f="libbpf \${Version}\n" libbpf1 && make test-unit'
echo "test-distros: Debian $suite: the host-kernel tier (waiting for $lock)" >&2
flock "$lock" env -i "${envs[@]}" chroot "$root" /bin/bash -c "cd /srv/project && make test-kernel"
echo "test-distros: Debian $suite: ok" >&2
