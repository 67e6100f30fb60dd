"""ebpf_gen.runtime: load generated skeletons through libbpf (libbpf.so.1 via ctypes).

Imports nothing but the standard library: a deployed app needs only this package,
libbpf and the generated files.
"""

from .errors import (
    AttachError,
    LibbpfError,
    LibbpfUnavailableError,
    LoadError,
    MissingCapabilityError,
    RuntimeBPFError,
)
from .maps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_NOEXIST,
    ArrayMap,
    HashMap,
    IterationAbortedError,
    Map,
    PerCPUArrayMap,
    PerCPUHashMap,
    ProgArray,
    map_class,
    register_map_class,
)
from .spec import MapKind, MapSpec, ObjectFile, ProgramSpec, VariableSpec

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_NOEXIST",
    "ArrayMap",
    "AttachError",
    "HashMap",
    "IterationAbortedError",
    "LibbpfError",
    "LibbpfUnavailableError",
    "LoadError",
    "Map",
    "MapKind",
    "MapSpec",
    "MissingCapabilityError",
    "ObjectFile",
    "PerCPUArrayMap",
    "PerCPUHashMap",
    "ProgArray",
    "ProgramSpec",
    "RuntimeBPFError",
    "VariableSpec",
    "map_class",
    "register_map_class",
]
