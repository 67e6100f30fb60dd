"""Shared by the runtime benches: build a skeleton with the ebpf-gen CLI, set up BCC."""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = REPO / ".venv" / "bin" / "python"
BCC_PYTHON = "/usr/bin/python3"  # Debian's python: where python3-bpfcc lives


def build(workdir: Path, name: str, source: str) -> Path:
    """Write ``source``, generate ``workdir/pkg/name.py`` + objects; returns workdir."""
    pkg = workdir / "benchskel"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    src = workdir / f"{name}.bpf.c"
    src.write_text(source)
    subprocess.run([str(PY), "-m", "ebpf_gen.cli", str(src), "--output-dir", str(pkg),
                    "--", "-I/usr/include/x86_64-linux-gnu"],
                   check=True, cwd=workdir)
    return workdir


def ensure_bcc_headers() -> None:
    """BCC compiles against /lib/modules/$(uname -r)/build: point it at Debian's headers."""
    mod = Path("/lib/modules") / platform.release()
    if (mod / "build" / "include").exists():
        return
    found = sorted(glob.glob("/usr/src/linux-headers-*-amd64"))
    if not found:
        subprocess.run(["apt-get", "install", "-y", "linux-headers-amd64"], check=True)
        found = sorted(glob.glob("/usr/src/linux-headers-*-amd64"))
    build_dir = found[-1]
    common = build_dir.removesuffix("-amd64") + "-common"
    mod.mkdir(parents=True, exist_ok=True)
    for link, target in (("build", build_dir), ("source", common)):
        path = mod / link
        if path.is_symlink() or path.exists():
            path.unlink()
        os.symlink(target, path)


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("bench needs root (bpf())")
