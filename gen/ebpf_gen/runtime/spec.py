"""Static descriptions of a BPF object, as written into generated modules.

Generated code builds these at import; the runtime reads them at load. Types are ctypes
types (``ctypes.c_uint32``, generated ``ctypes.Structure`` classes, ``c_char * 16``).

The specs are frozen value classes written out by hand rather than dataclasses: importing
dataclasses (and the inspect/ast/dis it pulls in) would cost a skeleton more start-up time
than everything else in the runtime together.
"""

from __future__ import annotations

import enum
from types import MappingProxyType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    CType = type[Any]
    """A ctypes type: simple, array, Structure or Union class."""
    _F = TypeVar("_F", bound="_Frozen")
else:
    CType = type


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
    ARENA = 33


class _Frozen:
    """Equality, hashing, repr and immutability over ``__slots__``, as a frozen dataclass."""

    __slots__: tuple[str, ...] = ()
    _FIELDS: tuple[str, ...] = ()  # in constructor order

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, _Frozen)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of frozen {type(self).__name__}")

    def _init(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def replace(self: _F, **changes: object) -> _F:
        """A copy with ``changes`` applied (``dataclasses.replace``)."""
        values: dict[str, Any] = dict(zip(self._FIELDS, self._values(), strict=True))
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        values.update(changes)
        return type(self)(**values)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self._values()))


def _rebuild(cls: type[_F], values: tuple[object, ...]) -> _F:
    obj = cls.__new__(cls)
    obj._init(**dict(zip(cls._FIELDS, values, strict=True)))
    return obj


class _Named(_Frozen):
    """A spec whose handle sits on a generated class under ``attribute``.

    The generator decides the attribute (``ebpf_gen.naming``: keywords, builtins and names that
    are not identifiers are rewritten) and writes it as ``attr`` only when it differs from
    the C name; the runtime never re-derives it.
    """

    __slots__ = ()
    name: str
    attr: str | None  # None: the attribute is ``name`` itself

    @property
    def attribute(self) -> str:
        """The attribute of the generated Maps/Programs class holding this handle."""
        return self.name if self.attr is None else self.attr


def _attr(name: str, attr: str | None) -> str | None:
    # One spelling per meaning, so that MapSpec("x", attr="x") == MapSpec("x")
    return None if attr == name else attr


class MapSpec(_Named):
    _FIELDS = ("name", "kind", "key", "value", "event", "max_entries", "flags", "inner", "attr")
    __slots__ = _FIELDS
    name: str
    kind: MapKind
    key: CType | None  # None: the map has no key (ringbuf) or BTF gave only a size
    value: CType | None
    event: CType | None  # record type of PERF_EVENT_ARRAY / RINGBUF, if known
    max_entries: int
    flags: int
    inner: MapSpec | None  # ARRAY_OF_MAPS / HASH_OF_MAPS: the __array(values, ...) template

    def __init__(
        self,
        name: str,
        kind: MapKind,
        key: CType | None = None,
        value: CType | None = None,
        event: CType | None = None,
        max_entries: int = 0,
        flags: int = 0,
        inner: MapSpec | None = None,
        attr: str | None = None,
    ) -> None:
        self._init(
            name=name,
            kind=kind,
            key=key,
            value=value,
            event=event,
            max_entries=max_entries,
            flags=flags,
            inner=inner,
            attr=_attr(name, attr),
        )


class ProgramSpec(_Named):
    _FIELDS = ("name", "section", "attr")
    __slots__ = _FIELDS
    name: str  # C function name
    section: str  # ELF section, e.g. "tracepoint/syscalls/sys_enter_getppid"

    def __init__(self, name: str, section: str, attr: str | None = None) -> None:
        self._init(name=name, section=section, attr=_attr(name, attr))


class VariableSpec(_Frozen):
    # No attr: a Variable descriptor in the generated class body names its C variable, so the
    # attribute is wherever the generator put the descriptor.
    _FIELDS = ("name", "section", "offset", "type")
    __slots__ = _FIELDS
    name: str
    section: str  # ".data", ".bss", ".rodata", ".data.foo", ...
    offset: int  # byte offset within the section
    type: CType

    def __init__(self, name: str, section: str, offset: int, type: CType) -> None:
        self._init(name=name, section=section, offset=offset, type=type)

    @property
    def readonly(self) -> bool:
        return self.section.startswith(".rodata")


class ObjectFile(_Frozen):
    _FIELDS = ("filename", "sha256")
    __slots__ = _FIELDS
    filename: str  # next to the generated module, e.g. "hello_bpfel.o"
    sha256: str  # hex digest checked before the bytes reach libbpf

    def __init__(self, filename: str, sha256: str) -> None:
        self._init(filename=filename, sha256=sha256)


class Handle(_Frozen):
    """The handle class a generated module declares for a map kind.

    ``params`` names the class's generic parameters by role, in order: ``"key"`` and
    ``"value"`` (the map's BTF key/value types as Python types), ``"event"`` (the records a
    perf or ring buffer carries), ``"inner"`` (the handle type of a map of maps'
    ``__array(values, ...)`` template). ``()``: not generic.
    """

    _FIELDS = ("name", "module", "params")
    __slots__ = _FIELDS
    name: str  # the class, exported by ebpf_gen.runtime
    module: str  # the runtime module defining it (imported when a map of the kind loads)
    params: tuple[str, ...]

    def __init__(self, name: str, module: str, params: tuple[str, ...] = ()) -> None:
        self._init(name=name, module=module, params=params)


_KV = ("key", "value")
# The one table of map handles. Adding a handle class for a kind is one row here (plus the
# class itself and its export from ebpf_gen.runtime); the generator and the loader both read
# it, and kinds without a row get the plain ``Map``.
HANDLES: dict[MapKind, Handle] = {
    MapKind.HASH: Handle("HashMap", "maps", _KV),
    MapKind.LRU_HASH: Handle("HashMap", "maps", _KV),
    MapKind.PERCPU_HASH: Handle("PerCPUHashMap", "maps", _KV),
    MapKind.LRU_PERCPU_HASH: Handle("PerCPUHashMap", "maps", _KV),
    MapKind.ARRAY: Handle("ArrayMap", "maps", _KV),
    MapKind.PERCPU_ARRAY: Handle("PerCPUArrayMap", "maps", _KV),
    MapKind.PROG_ARRAY: Handle("ProgArray", "maps"),
    MapKind.PERF_EVENT_ARRAY: Handle("PerfEventArray", "events", ("event",)),
    MapKind.RINGBUF: Handle("RingBuf", "events", ("event",)),
    MapKind.ARRAY_OF_MAPS: Handle("MapOfMaps", "maps", ("key", "inner")),
    MapKind.HASH_OF_MAPS: Handle("MapOfMaps", "maps", ("key", "inner")),
}
PLAIN_HANDLE = Handle("Map", "maps")


def handle_for(kind: MapKind) -> Handle:
    """The handle of maps of ``kind``: its row in HANDLES, else the plain ``Map``."""
    return HANDLES.get(kind, PLAIN_HANDLE)


# Everything a generated module may import from ebpf_gen.runtime. The generator imports
# exactly the names a module uses out of these, and reserves all of them (and the module's
# own globals) so that no generated class can shadow one; a test checks that the runtime
# exports each.
MODULE_IMPORTS: frozenset[str] = frozenset(
    {
        "Bitfield", "CEnum", "CStruct", "CUnion", "check_layout",
        "MapKind", "MapSpec", "MapsBase", "ObjectFile", "ObjectSpec", "ObjectsBase",
        "OpenObject", "Program", "ProgramSpec", "ProgramsBase", "map_spec", "program_spec",
        "NO_SETTINGS",
        "Variable", "VariableSpec", "VariablesBase",
        PLAIN_HANDLE.name,
        *(h.name for h in HANDLES.values()),
    }
)  # fmt: skip


# What a generated module writes: one line per map, program and variable, holding only what
# the object cannot tell libbpf (the Python types, the attribute it sits under). Kind,
# max_entries, flags and sections are libbpf's, read when the object loads.


def map_spec(
    name: str,
    *,
    key: CType | None = None,
    value: CType | None = None,
    event: CType | None = None,
    inner: MapSpec | None = None,
) -> Any:
    """``counts: HashMap[int, int] = map_spec("counts", key=..., value=...)`` in a generated
    Maps class: the annotation is the handle mypy sees, the value is its spec until load
    (typed Any so that the two can share one line)."""
    return MapSpec(name, MapKind.UNSPEC, key, value, event, inner=inner)


def program_spec(name: str) -> Any:
    """``hello: Program = program_spec("hello")`` in a generated Programs class."""
    return ProgramSpec(name, "")


# The default of a generated load()'s settings: an empty read-only mapping, typed Any so
# that the parameter's type is the TypedDict alone (mypy then names a wrong key or value,
# where ``TypedDict | None`` only says the whole dict does not fit).
NO_SETTINGS: Any = MappingProxyType({})
