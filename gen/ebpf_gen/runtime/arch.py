"""Which object file a machine loads: byte order, and the architecture where the code depends on it.

The contract between the generator and a generated module, owned here (the generator imports
it; this module imports nothing of the generator):

- ``ObjectSpec.files`` keys are ``"little"``/``"big"`` for an object that any architecture of
  that byte order loads (the program never reads ``pt_regs`` through ``bpf_tracing.h``'s
  ``PT_REGS_*`` macros, so every ``__TARGET_ARCH_*`` compiled to the same bytes), or
  ``"<order>/<arch>"`` (``"little/arm64"``) for an object built for one architecture.
- Architecture names are libbpf's ``__TARGET_ARCH_<name>`` suffixes, the ones
  ``bpf_tracing.h`` knows.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TypeVar

from .errors import ObjectFileError

# libbpf's bpf_tracing.h architectures -> the byte orders Linux runs them in. The order of
# the table is the generator's default order (the first of a byte order is its primary).
ARCHES: dict[str, tuple[str, ...]] = {
    "x86": ("little",),
    "arm64": ("little",),
    "riscv": ("little",),
    "powerpc": ("little", "big"),  # ppc64le and ppc64
    "loongarch": ("little",),
    "s390": ("big",),
    "arm": ("little", "big"),
    "mips": ("little", "big"),
    "sparc": ("big",),
    "arc": ("little",),
}
# Compiled unless --arch says otherwise: the 64-bit architectures with a BPF JIT that
# distributions ship; 32-bit arm, mips, sparc and arc are one --arch away.
DEFAULT_ARCHES: tuple[str, ...] = ("x86", "arm64", "riscv", "powerpc", "loongarch", "s390")

# Each byte order's primary architecture, compiled first (and the source parsed as): the
# most deployed one of that order.
PRIMARY: dict[str, str] = {"little": "x86", "big": "s390"}

# platform.machine() values (uname -m, and Windows/BSD spellings) -> architecture
MACHINES: dict[str, str] = {
    "x86_64": "x86",
    "amd64": "x86",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
    "x86": "x86",
    "aarch64": "arm64",
    "aarch64_be": "arm64",
    "arm64": "arm64",
    "s390x": "s390",
    "s390": "s390",
    "ppc64le": "powerpc",
    "ppc64": "powerpc",
    "ppc": "powerpc",
    "ppcle": "powerpc",
    "riscv64": "riscv",
    "riscv32": "riscv",
    "loongarch64": "loongarch",
    "mips": "mips",
    "mipsel": "mips",
    "mips64": "mips",
    "mips64el": "mips",
    "sparc64": "sparc",
    "sparc": "sparc",
    "arc": "arc",
}

T = TypeVar("T")


def host_machine() -> str:
    """``platform.machine()`` without importing platform (it costs the import time of a
    skeleton): on POSIX both are ``uname -m``."""
    if hasattr(os, "uname"):
        return os.uname().machine
    import platform

    return platform.machine()


class ArchError(ObjectFileError):
    """No object for this machine (the generator option that adds one is named)."""


def machine_arch(machine: str | None = None) -> str | None:
    """The architecture name of ``machine`` (default: ``platform.machine()``), None if unknown."""
    m = (host_machine() if machine is None else machine).lower()
    if m in MACHINES:
        return MACHINES[m]
    if m.startswith("armv") or m.startswith("arm"):
        return "arm"  # armv7l, armv6l, armv8l (32-bit userland)
    return None


def object_key(byteorder: str, arch: str | None) -> str:
    return byteorder if arch is None else f"{byteorder}/{arch}"


def select(
    files: Mapping[str, T],
    *,
    name: str,
    machine: str | None = None,
    byteorder: str = sys.byteorder,
) -> T:
    """The entry of ``files`` this machine loads: its architecture's own object when there is
    one, else the byte order's arch-independent one; ArchError naming ``--arch`` otherwise."""
    arch = machine_arch(machine)
    if arch is not None and object_key(byteorder, arch) in files:
        return files[object_key(byteorder, arch)]
    if byteorder in files:
        return files[byteorder]
    have = ", ".join(sorted(files)) or "none"
    shown = host_machine() if machine is None else machine
    if not any(k.partition("/")[0] == byteorder for k in files):
        target = "bpfel" if byteorder == "little" else "bpfeb"
        raise ArchError(f"{name}: no object built for this {byteorder}-endian machine "
                        f"(have: {have}): regenerate with --target including {target}")
    if arch is None:
        raise ArchError(
            f"{name}: machine {shown!r} is not an architecture ebpf-gen knows and the object "
            f"depends on the architecture (have: {have})"
        )
    raise ArchError(
        f"{name}: no object built for {arch} ({byteorder}-endian, machine {shown!r}; have: "
        f"{have}): regenerate with --arch including {arch} (and --arch-cflags {arch}=... "
        "for its headers)"
    )
