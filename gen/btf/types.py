"""The BTF model: one frozen dataclass per kind.

Types refer to each other by type id (an index into ``Spec.types``), not by object: BTF
graphs have cycles (a struct holding a pointer to itself) and ids keep the model flat,
hashable and cheap to build for vmlinux's ~130k types. Id 0 is ``Void``.

``kind`` is a class attribute where a class stands for one kind, and a field only where it
stands for several (``Enum``, ``Qualifier``): one slot less to fill for each of those objects.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Union


class Kind(enum.IntEnum):
    """BTF_KIND_* values from include/uapi/linux/btf.h."""

    VOID = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class IntEncoding(enum.IntFlag):
    """BTF_INT_* encoding bits."""

    NONE = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4


class Linkage(enum.IntEnum):
    """Linkage of FUNC (static/global/extern) and VAR (static/global/extern)."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


@dataclass(frozen=True, slots=True)
class Void:
    id: int = 0
    name: str = ""
    kind: ClassVar[Kind] = Kind.VOID


@dataclass(frozen=True, slots=True)
class Int:
    id: int
    name: str
    size: int  # bytes
    encoding: IntEncoding
    offset: int  # BTF_INT_OFFSET, bits (always 0 from clang)
    bits: int  # BTF_INT_BITS
    kind: ClassVar[Kind] = Kind.INT

    @property
    def signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)


@dataclass(frozen=True, slots=True)
class Ptr:
    id: int
    name: str
    type: int
    kind: ClassVar[Kind] = Kind.PTR


@dataclass(frozen=True, slots=True)
class Array:
    id: int
    name: str
    type: int
    index_type: int
    nelems: int
    kind: ClassVar[Kind] = Kind.ARRAY


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # "" for anonymous struct/union members
    type: int
    bit_offset: int  # from the start of the enclosing struct/union
    bitfield_size: int  # 0 when not a bitfield


@dataclass(frozen=True, slots=True)
class Struct:
    id: int
    name: str  # "" when anonymous
    size: int
    members: tuple[Member, ...]
    kind: ClassVar[Kind] = Kind.STRUCT


@dataclass(frozen=True, slots=True)
class Union_:
    id: int
    name: str
    size: int
    members: tuple[Member, ...]
    kind: ClassVar[Kind] = Kind.UNION


@dataclass(frozen=True, slots=True)
class EnumValue:
    name: str
    value: int  # already sign-interpreted when the enum is signed


@dataclass(frozen=True, slots=True)
class Enum:
    """ENUM and ENUM64 both decode to this; ``kind`` keeps which one it was."""

    id: int
    name: str
    size: int  # 1, 2, 4 or 8
    signed: bool  # kind_flag
    values: tuple[EnumValue, ...]
    kind: Kind = Kind.ENUM


@dataclass(frozen=True, slots=True)
class Fwd:
    id: int
    name: str
    is_union: bool  # kind_flag
    kind: ClassVar[Kind] = Kind.FWD


@dataclass(frozen=True, slots=True)
class Typedef:
    id: int
    name: str
    type: int
    kind: ClassVar[Kind] = Kind.TYPEDEF


@dataclass(frozen=True, slots=True)
class Qualifier:
    """VOLATILE, CONST, RESTRICT and TYPE_TAG: a name (TYPE_TAG only) over another type."""

    id: int
    name: str
    type: int
    kind: Kind


@dataclass(frozen=True, slots=True)
class Func:
    id: int
    name: str
    type: int  # a FuncProto
    linkage: Linkage
    kind: ClassVar[Kind] = Kind.FUNC


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: int  # 0 with an empty name marks a trailing "..."


@dataclass(frozen=True, slots=True)
class FuncProto:
    id: int
    name: str
    return_type: int
    params: tuple[Param, ...]
    kind: ClassVar[Kind] = Kind.FUNC_PROTO


@dataclass(frozen=True, slots=True)
class Var:
    id: int
    name: str
    type: int
    linkage: Linkage
    kind: ClassVar[Kind] = Kind.VAR


@dataclass(frozen=True, slots=True)
class VarSecInfo:
    type: int  # a Var (or a Func for extern ksyms)
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class DataSec:
    id: int
    name: str
    size: int
    vars: tuple[VarSecInfo, ...]
    kind: ClassVar[Kind] = Kind.DATASEC


@dataclass(frozen=True, slots=True)
class Float:
    id: int
    name: str
    size: int
    kind: ClassVar[Kind] = Kind.FLOAT


@dataclass(frozen=True, slots=True)
class DeclTag:
    id: int
    name: str
    type: int
    component_idx: int  # -1: the tag applies to the type itself
    kind: ClassVar[Kind] = Kind.DECL_TAG


Type = Union[  # noqa: UP007 (a runtime alias; kept as the model defines it)
    Void, Int, Ptr, Array, Struct, Union_, Enum, Fwd, Typedef, Qualifier, Func, FuncProto,
    Var, DataSec, Float, DeclTag,
]

# Kinds that only wrap another type without changing its layout.
_TRANSPARENT = (Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG)


@dataclass(frozen=True)
class Spec:
    """A decoded .BTF section. ``types[i]`` has id ``i``; ``types[0]`` is Void."""

    types: tuple[Type, ...]
    byteorder: str  # "little" or "big", from the BTF magic

    def __getitem__(self, type_id: int) -> Type:
        return self.types[type_id]

    def __len__(self) -> int:
        return len(self.types)

    def __iter__(self) -> Iterator[Type]:
        return iter(self.types)

    def skip_qualifiers(self, type_id: int) -> Type:
        """Follow CONST/VOLATILE/RESTRICT/TYPE_TAG (not TYPEDEF)."""
        t = self.types[type_id]
        while t.kind in (Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG):
            t = self.types[t.type]  # type: ignore[union-attr]
        return t

    def resolve(self, type_id: int) -> Type:
        """Follow typedefs and qualifiers down to the type that defines the layout."""
        t = self.types[type_id]
        seen = 0
        while t.kind in _TRANSPARENT:
            t = self.types[t.type]  # type: ignore[union-attr]
            seen += 1
            if seen > 64:  # malformed BTF can loop; the decoder rejects cycles, be safe anyway
                raise ValueError(f"type id {type_id}: typedef/qualifier chain too long")
        return t

    def sizeof(self, type_id: int) -> int:
        """Size in bytes of a type, as libbpf's btf__resolve_size computes it."""
        t = self.resolve(type_id)
        if isinstance(t, (Int, Struct, Union_, Enum, Float, DataSec)):
            return t.size
        if isinstance(t, Ptr):
            return 8  # BPF is a 64-bit target
        if isinstance(t, Array):
            return t.nelems * self.sizeof(t.type)
        if isinstance(t, Var):
            return self.sizeof(t.type)
        raise ValueError(f"type id {type_id}: {t.kind.name} has no size")

    def named(self, name: str, *kinds: Kind) -> list[Type]:
        """Every type called ``name`` (of one of ``kinds`` when given), in id order."""
        return [t for t in self.types if t.name == name and (not kinds or t.kind in kinds)]
