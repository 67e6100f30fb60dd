"""ebpf_gen.runtime: load generated skeletons through libbpf (libbpf.so.1 via ctypes).

Imports nothing but the standard library: a deployed app needs only this package,
libbpf and the generated files.
"""

from __future__ import annotations

from .errors import (
    AttachError,
    KernelRefusedError,
    LibbpfError,
    LibbpfUnavailableError,
    LoadError,
    MissingCapabilityError,
    ObjectFileError,
    RuntimeBPFError,
)
from .layout import Bitfield, CEnum, CStruct, CUnion, check_layout
from .links import FdLink, Link, LinkGroup, ProgAttachLink, TcFilterLink
from .maps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_NOEXIST,
    ArrayMap,
    BloomFilter,
    BuildIdFrame,
    HashMap,
    IterationAbortedError,
    LocalStorage,
    LpmTrieMap,
    Map,
    MapOfMaps,
    PerCPUArrayMap,
    PerCPUHashMap,
    ProgArray,
    Queue,
    Stack,
    StackTraceMap,
    map_class,
    register_map_class,
)
from .objects import MapsBase, ObjectsBase, ObjectSpec, OpenObject, ProgramsBase
from .programs import Program
from .spec import (
    NO_SETTINGS,
    MapKind,
    MapSpec,
    ObjectFile,
    ProgramSpec,
    VariableSpec,
    map_spec,
    program_spec,
)
from .variables import Variable, VariablesBase

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from .events import PerfEventArray, RingBuf
    from .histogram import print_linear_hist, print_log2_hist
    from .pinning import NotOnBpffsError, is_bpffs, open_pinned_link
    from .trace import TraceRecord, trace_pipe

# Imported on first use: events pulls in asyncio, which would triple the import time of
# every skeleton, including those without event maps.
_LAZY = {
    "PerfEventArray": "events",
    "RingBuf": "events",
    "TraceRecord": "trace",
    "NotOnBpffsError": "pinning",
    "print_log2_hist": "histogram",
    "print_linear_hist": "histogram",
    "open_pinned_link": "pinning",
    "is_bpffs": "pinning",
    "trace_pipe": "trace",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_NOEXIST",
    "NO_SETTINGS",
    "ArrayMap",
    "AttachError",
    "Bitfield",
    "BloomFilter",
    "BuildIdFrame",
    "CEnum",
    "CStruct",
    "CUnion",
    "FdLink",
    "HashMap",
    "IterationAbortedError",
    "KernelRefusedError",
    "LibbpfError",
    "LibbpfUnavailableError",
    "Link",
    "LinkGroup",
    "LoadError",
    "LocalStorage",
    "LpmTrieMap",
    "Map",
    "MapKind",
    "MapOfMaps",
    "MapSpec",
    "MapsBase",
    "MissingCapabilityError",
    "NotOnBpffsError",
    "ObjectFile",
    "ObjectFileError",
    "ObjectSpec",
    "ObjectsBase",
    "OpenObject",
    "PerCPUArrayMap",
    "PerCPUHashMap",
    "PerfEventArray",
    "ProgArray",
    "ProgAttachLink",
    "Program",
    "ProgramSpec",
    "ProgramsBase",
    "Queue",
    "RingBuf",
    "RuntimeBPFError",
    "Stack",
    "StackTraceMap",
    "TcFilterLink",
    "TraceRecord",
    "Variable",
    "VariableSpec",
    "VariablesBase",
    "check_layout",
    "is_bpffs",
    "map_class",
    "map_spec",
    "open_pinned_link",
    "print_linear_hist",
    "print_log2_hist",
    "program_spec",
    "register_map_class",
    "trace_pipe",
]
