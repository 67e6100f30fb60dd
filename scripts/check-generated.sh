#!/usr/bin/env bash
# make check-generated: fail when generated/ is stale.
# generated/ is made with Debian 12's clang (GENERATED_WITH_CLANG). Another clang (Debian 13's
# 19) compiles other object bytes, so there the modules are regenerated in a scratch copy and
# compared with the objects' sha256 masked: the module text must still be the same, which is
# what the golden tests promise for every supported toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
GENERATED_WITH_CLANG=14
py=${PY:-.venv/bin/python}
[[ $py == /* ]] || py=$PWD/$py  # absolute, not resolved: the venv is the symlink
major=$(clang -dumpversion | cut -d. -f1)
if [[ $major == "$GENERATED_WITH_CLANG" ]]; then
    exec "$py" -m ebpf_gen.cli generate --check
fi
echo "check-generated: clang $major, generated/ is made with clang $GENERATED_WITH_CLANG:" \
     "comparing the module text, object digests aside" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r pyproject.toml examples generated "$tmp/"
(cd "$tmp" && "$py" -m ebpf_gen.cli generate --force)
mask() { sed -E 's/sha256="[0-9a-f]{64}"/sha256="..."/' "$1"; }
rc=0
for f in generated/*.py; do
    [[ $(basename "$f") == __init__.py ]] && continue
    if ! diff -u <(mask "$f") <(mask "$tmp/$f"); then
        echo "check-generated: $f is stale (regenerate with make gen)" >&2
        rc=1
    fi
done
exit "$rc"
