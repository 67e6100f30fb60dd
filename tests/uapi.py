"""The UAPI header's enums by value, as the compiler reads them.

Constants get renamed between kernel releases (6.x's linux/bpf.h calls value 19
BPF_MAP_TYPE_CGROUP_STORAGE_DEPRECATED and keeps the old name as an alias), so tables are
checked against what each name *means*: the header is compiled with clang and the enum read
back from BTF, aliases and all, instead of parsed with regular expressions.
"""

from __future__ import annotations

import subprocess
import sysconfig
from functools import cache
from pathlib import Path

from ebpf_gen.btf.decode import decode_btf
from ebpf_gen.btf.types import Enum
from ebpf_gen.elf import parse_elf


@cache
def header_enum(header: str, enum: str, prefix: str) -> dict[int, frozenset[str]]:
    """value -> every name the header gives it, ``prefix`` stripped."""
    import tempfile

    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "u.c"
        src.write_text(f"#include <{header}>\nenum {enum} uapi_probe;\n")
        obj = Path(tmp) / "u.o"
        subprocess.run(["clang", "-g", "-O2", "-target", "bpfel", f"-I/usr/include/{multiarch}",
                        "-c", str(src), "-o", str(obj)], check=True)
        elf = parse_elf(obj.read_bytes(), str(obj))
    spec = decode_btf(elf.btf)
    (t,) = [t for t in spec.types if isinstance(t, Enum) and t.name == enum]
    out: dict[int, set[str]] = {}
    for v in t.values:
        if v.name.startswith("__"):
            continue  # __MAX_BPF_MAP_TYPE: a count, not a value
        assert v.name.startswith(prefix), v.name
        out.setdefault(v.value, set()).add(v.name[len(prefix):])
    return {k: frozenset(v) for k, v in out.items()}
