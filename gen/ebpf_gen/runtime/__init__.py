"""ebpf_gen.runtime: load generated skeletons through libbpf (libbpf.so.1 via ctypes).

Imports nothing but the standard library: a deployed app needs only this package,
libbpf and the generated files.
"""

from __future__ import annotations

from .errors import (
    AttachError,
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
    HashMap,
    IterationAbortedError,
    Map,
    MapOfMaps,
    PerCPUArrayMap,
    PerCPUHashMap,
    ProgArray,
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
    from .trace import TraceRecord, trace_pipe

# Imported on first use: events pulls in asyncio, which would triple the import time of
# every skeleton, including those without event maps.
_LAZY = {
    "PerfEventArray": "events",
    "RingBuf": "events",
    "TraceRecord": "trace",
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
    "CEnum",
    "CStruct",
    "CUnion",
    "FdLink",
    "HashMap",
    "IterationAbortedError",
    "LibbpfError",
    "LibbpfUnavailableError",
    "Link",
    "LinkGroup",
    "LoadError",
    "Map",
    "MapKind",
    "MapOfMaps",
    "MapSpec",
    "MapsBase",
    "MissingCapabilityError",
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
    "RingBuf",
    "RuntimeBPFError",
    "TcFilterLink",
    "TraceRecord",
    "Variable",
    "VariableSpec",
    "VariablesBase",
    "check_layout",
    "map_class",
    "map_spec",
    "program_spec",
    "register_map_class",
    "trace_pipe",
]
