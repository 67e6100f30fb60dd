"""Static descriptions of a BPF object, as written into generated modules.

Generated code builds these at import; the runtime reads them at load. Types are ctypes
types (``ctypes.c_uint32``, generated ``ctypes.Structure`` classes, ``c_char * 16``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

CType = type[Any]
"""A ctypes type: simple, array, Structure or Union class."""


class MapKind(enum.IntEnum):
    """BPF_MAP_TYPE_* from include/uapi/linux/bpf.h, prefix stripped."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32


@dataclass(frozen=True)
class MapSpec:
    name: str
    kind: MapKind
    key: CType | None = None  # None: the map has no key (ringbuf) or BTF gave only a size
    value: CType | None = None
    event: CType | None = None  # record type of PERF_EVENT_ARRAY / RINGBUF, if known
    max_entries: int = 0
    flags: int = 0


@dataclass(frozen=True)
class ProgramSpec:
    name: str  # C function name
    section: str  # ELF section, e.g. "tracepoint/syscalls/sys_enter_getppid"


@dataclass(frozen=True)
class VariableSpec:
    name: str
    section: str  # ".data", ".bss", ".rodata", ".data.foo", ...
    offset: int  # byte offset within the section
    type: CType

    @property
    def readonly(self) -> bool:
        return self.section.startswith(".rodata")


@dataclass(frozen=True)
class ObjectFile:
    filename: str  # next to the generated module, e.g. "hello_bpfel.o"
    sha256: str  # hex digest checked before the bytes reach libbpf
