#!/usr/bin/env bash
# fetch-kernel.sh VERSION: unpack Debian's stock kernel (image + modules + headers) for
# VERSION (5.10 | 6.1 | 6.12) into .vm/kernels/VERSION/, without installing anything.
#
# A private apt configuration (own sources.list, state and cache dirs) keeps the host's
# apt state untouched; the mirror is the one the host already uses, so this works
# behind the same proxy/mirror policy as `apt-get install`.
# Prints the kernel directory on stdout; everything else goes to stderr.
set -euo pipefail

die() { echo "fetch-kernel: $*" >&2; exit 1; }

version="${1:-}"
case "$version" in
    5.10) suite=bullseye; pattern='^linux-image-5\.10\.0-[0-9]+-amd64-unsigned$' ;;
    6.1) suite=bookworm; pattern='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;
    6.12) suite=trixie; pattern='^linux-image-6\.12\.[0-9]+\+deb13-amd64-unsigned$' ;;
    *) die "unknown kernel version '${version}' (want 5.10, 6.1 or 6.12)" ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${repo_root}/.vm/kernels/${version}"

# BCC in the guest compiles against /lib/modules/$(uname -r)/{build,source}: build is the
# arch tree (generated headers), source the -common tree (include/linux/kconfig.h). The
# guest sees the host's filesystem at the same paths, so absolute links into $dest resolve
# there; they are redone on every call so a moved checkout repairs its cache.
link_headers() {
    local moddir hdr
    moddir="$(find "$dest" -maxdepth 4 -type d -path '*lib/modules/*' -name '*-amd64' | head -n1)"
    [[ -n "$moddir" ]] || die "no lib/modules/*-amd64 under $dest"
    hdr="${dest}/usr/src/linux-headers-$(basename "$moddir")"
    [[ -d "$hdr" ]] || die "no ${hdr#"$dest"/} under $dest"
    ln -sfn "$hdr" "${moddir}/build"
    ln -sfn "${hdr%-amd64}-common" "${moddir}/source"
}

if [[ -f "${dest}/.complete" ]]; then
    link_headers
    echo "$dest"
    exit 0
fi

# The host's Debian mirror: the first URI ending in /debian in one-line or deb822 sources.
mirror_of_host() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        grep -hoE '(https?|ftp)://[^ ]+/debian/?( |$)' "$f" 2>/dev/null | head -n1 | tr -d ' '
    done | head -n1
}
mirror="$(mirror_of_host)"
[[ -n "$mirror" ]] || die "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list(.d)"
mirror="${mirror%/}"

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f "$keyring" ]] || die "missing $keyring (apt-get install debian-archive-keyring)"

apt_root="${repo_root}/.vm/apt/${suite}"
mkdir -p "${apt_root}/state/lists/partial" "${apt_root}/cache/archives/partial" "${apt_root}/etc"
echo "deb [signed-by=${keyring}] ${mirror} ${suite} main" >"${apt_root}/etc/sources.list"
apt_opts=(
    -o "Dir::Etc::SourceList=${apt_root}/etc/sources.list"
    -o "Dir::Etc::SourceParts=${apt_root}/etc/none"
    -o "Dir::State=${apt_root}/state"
    -o "Dir::State::status=${apt_root}/state/status"
    -o "Dir::Cache=${apt_root}/cache"
    -o "APT::Architecture=amd64"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
)
touch "${apt_root}/state/status"

echo "fetch-kernel: apt-get update (${suite} from ${mirror})" >&2
apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update failed for ${suite} at ${mirror}"

image_pkg="$(apt-cache "${apt_opts[@]}" pkgnames linux-image- | grep -E "$pattern" | sort -V | tail -n1)"
[[ -n "$image_pkg" ]] || die "no package matching ${pattern} in ${suite}"
# linux-image-<abi>-amd64-unsigned -> headers linux-headers-<abi>-amd64 and -common
abi="${image_pkg#linux-image-}"
abi="${abi%-amd64-unsigned}"
headers_pkgs=("linux-headers-${abi}-amd64" "linux-headers-${abi}-common")

work="${apt_root}/debs"
rm -rf "$work" && mkdir -p "$work"
echo "fetch-kernel: downloading ${image_pkg} ${headers_pkgs[*]}" >&2
(cd "$work" && apt-get "${apt_opts[@]}" -qq download "$image_pkg" "${headers_pkgs[@]}" >&2) \
    || die "apt-get download failed for ${image_pkg} ${headers_pkgs[*]}"

rm -rf "${dest}.partial" && mkdir -p "${dest}.partial"
for deb in "$work"/*.deb; do
    dpkg -x "$deb" "${dest}.partial" || die "dpkg -x failed on $(basename "$deb")"
done

# virtme-ng finds modules next to the image (lib/modules or usr/lib/modules, trixie's
# merged-/usr layout); resolve which one this package used.
moddir="$(find "${dest}.partial" -maxdepth 4 -type d -path '*lib/modules/*' -name "${abi}-amd64" | head -n1)"
[[ -n "$moddir" ]] || die "no lib/modules/${abi}-amd64 in ${image_pkg}"
rm -f "${moddir}/build" "${moddir}/source"
# depmod once here so virtme-ng doesn't have to (and the guest's modprobe works).
depmod -a -b "${moddir%/lib/modules/*}" "${abi}-amd64" 2>/dev/null || true

rm -rf "$dest"
mv "${dest}.partial" "$dest"
link_headers
printf '%s\n' "$image_pkg" "${headers_pkgs[@]}" >"${dest}/.complete"
rm -rf "$work"
echo "$dest"
