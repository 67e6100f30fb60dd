"""The BTF model: one immutable record class per kind.

Types refer to each other by type id (an index into ``Spec.types``), not by object: BTF
graphs have cycles (a struct holding a pointer to itself) and ids keep the model flat,
hashable and cheap to build for vmlinux's ~130k types. Id 0 is ``Void``.

Records are ``NamedTuple``s rather than frozen dataclasses because the decoder builds
~230k of them for vmlinux: ``tuple.__new__(cls, fields)`` makes one in C, where a frozen
dataclass runs a Python ``__init__`` storing each field through ``object.__setattr__``
(about twice the instructions per object). ``@_record`` gives them dataclass equality:
``Ptr(1, "", 2) != Typedef(1, "", 2)``, though both are the tuple ``(1, "", 2)``.

``Struct.members``, ``Union_.members`` and ``FuncProto.params`` may be decoded on first use
(``Deferred``): they are two thirds of vmlinux's objects, and a generator reading an
object file's BTF, or one type out of vmlinux, needs few of them. Records compare, hash
and print the same either way.

``kind`` is a property where a class stands for one kind, and a field only where it stands
for several (``Enum``, ``Qualifier``): one element less for each of those objects.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, Union


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


_R = TypeVar("_R")


def _record_eq(self: tuple[Any, ...], other: object) -> bool:
    return type(self) is type(other) and tuple.__eq__(self, other)


def _record_ne(self: tuple[Any, ...], other: object) -> bool:
    return not _record_eq(self, other)


def _record(cls: type[_R]) -> type[_R]:
    """Equal only to a record of the same class; hashed as the tuple (a cross-class hash
    collision is harmless, a cross-class equality would not be)."""
    cls.__eq__ = _record_eq  # type: ignore[assignment,method-assign]
    cls.__ne__ = _record_ne  # type: ignore[assignment,method-assign]
    cls.__hash__ = tuple.__hash__  # type: ignore[assignment,method-assign]
    return cls


@_record
class Void(NamedTuple):
    id: int = 0
    name: str = ""

    @property
    def kind(self) -> Kind:
        return Kind.VOID


@_record
class Int(NamedTuple):
    id: int
    name: str
    size: int  # bytes
    encoding: IntEncoding
    offset: int  # BTF_INT_OFFSET, bits (always 0 from clang)
    bits: int  # BTF_INT_BITS

    @property
    def kind(self) -> Kind:
        return Kind.INT

    @property
    def signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)


@_record
class Ptr(NamedTuple):
    id: int
    name: str
    type: int

    @property
    def kind(self) -> Kind:
        return Kind.PTR


@_record
class Array(NamedTuple):
    id: int
    name: str
    type: int
    index_type: int
    nelems: int

    @property
    def kind(self) -> Kind:
        return Kind.ARRAY


@_record
class Member(NamedTuple):
    name: str  # "" for anonymous struct/union members
    type: int
    bit_offset: int  # from the start of the enclosing struct/union
    bitfield_size: int  # 0 when not a bitfield


@_record
class Struct(NamedTuple):
    id: int
    name: str  # "" when anonymous
    size: int
    members: tuple[Member, ...]

    @property
    def kind(self) -> Kind:
        return Kind.STRUCT


@_record
class Union_(NamedTuple):
    id: int
    name: str
    size: int
    members: tuple[Member, ...]

    @property
    def kind(self) -> Kind:
        return Kind.UNION


@_record
class EnumValue(NamedTuple):
    name: str
    value: int  # already sign-interpreted when the enum is signed


@_record
class Enum(NamedTuple):
    """ENUM and ENUM64 both decode to this; ``kind`` keeps which one it was."""

    id: int
    name: str
    size: int  # 1, 2, 4 or 8
    signed: bool  # kind_flag
    values: tuple[EnumValue, ...]
    kind: Kind = Kind.ENUM


@_record
class Fwd(NamedTuple):
    id: int
    name: str
    is_union: bool  # kind_flag

    @property
    def kind(self) -> Kind:
        return Kind.FWD


@_record
class Typedef(NamedTuple):
    id: int
    name: str
    type: int

    @property
    def kind(self) -> Kind:
        return Kind.TYPEDEF


@_record
class Qualifier(NamedTuple):
    """VOLATILE, CONST, RESTRICT and TYPE_TAG: a name (TYPE_TAG only) over another type."""

    id: int
    name: str
    type: int
    kind: Kind


@_record
class Func(NamedTuple):
    id: int
    name: str
    type: int  # a FuncProto
    linkage: Linkage

    @property
    def kind(self) -> Kind:
        return Kind.FUNC


@_record
class Param(NamedTuple):
    name: str
    type: int  # 0 with an empty name marks a trailing "..."


@_record
class FuncProto(NamedTuple):
    id: int
    name: str
    return_type: int
    params: tuple[Param, ...]

    @property
    def kind(self) -> Kind:
        return Kind.FUNC_PROTO


@_record
class Var(NamedTuple):
    id: int
    name: str
    type: int
    linkage: Linkage

    @property
    def kind(self) -> Kind:
        return Kind.VAR


@_record
class VarSecInfo(NamedTuple):
    type: int  # a Var (or a Func for extern ksyms)
    offset: int
    size: int


@_record
class DataSec(NamedTuple):
    id: int
    name: str
    size: int
    vars: tuple[VarSecInfo, ...]

    @property
    def kind(self) -> Kind:
        return Kind.DATASEC


@_record
class Float(NamedTuple):
    id: int
    name: str
    size: int

    @property
    def kind(self) -> Kind:
        return Kind.FLOAT


@_record
class DeclTag(NamedTuple):
    id: int
    name: str
    type: int
    component_idx: int  # -1: the tag applies to the type itself

    @property
    def kind(self) -> Kind:
        return Kind.DECL_TAG


class Deferred(tuple):  # type: ignore[type-arg]
    """A record field decoded on first use: ``(load, *args)`` stands for ``load(self)``.

    The record holds this in place of the field's tuple; the field's property returns
    ``get()``, and ``load`` caches, so every read gives the same tuple. It compares,
    hashes, prints and iterates as that tuple, for code that reaches it by index.
    """

    __slots__ = ()

    def get(self) -> tuple[Any, ...]:
        load: Callable[[Deferred], tuple[Any, ...]] = tuple.__getitem__(self, 0)
        return load(self)

    def __eq__(self, other: object) -> bool:
        return self.get() == (other.get() if type(other) is Deferred else other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.get())

    def __repr__(self) -> str:
        return repr(self.get())

    def __len__(self) -> int:
        return len(self.get())

    def __iter__(self) -> Iterator[Any]:
        return iter(self.get())

    def __getitem__(self, index: Any) -> Any:
        return self.get()[index]

    def __contains__(self, item: object) -> bool:
        return item in self.get()

    def __reduce__(self) -> tuple[type[tuple[Any, ...]], tuple[tuple[Any, ...]]]:
        # copy, deepcopy and pickle see the loaded tuple, never the loader.
        return tuple, (self.get(),)


def _deferrable(index: int, doc: str) -> property:
    def get(self: tuple[Any, ...]) -> Any:
        value = self[index]
        if type(value) is Deferred:
            return tuple.__getitem__(value, 0)(value)  # Deferred.get, one call less
        return value

    return property(get, doc=doc)


for _cls, _field, _doc in (
    (Struct, "members", "The members, decoded on first use when the decoder deferred them."),
    (Union_, "members", "The members, decoded on first use when the decoder deferred them."),
    (FuncProto, "params", "The parameters, decoded on first use when the decoder deferred them."),
):
    # Replaces the NamedTuple's own accessor; the field itself (position, _replace, the
    # constructor) is unchanged.
    setattr(_cls, _field, _deferrable(_cls._fields.index(_field), _doc))


Type = Union[  # noqa: UP007 (a runtime alias; kept as the model defines it)
    Void, Int, Ptr, Array, Struct, Union_, Enum, Fwd, Typedef, Qualifier, Func, FuncProto,
    Var, DataSec, Float, DeclTag,
]

# The C keyword of each kind that has one. ENUM and ENUM64 are both `enum` in C (clang picks
# ENUM64 for an enum with a value beyond 32 bits, clang 14 and older write ENUM): compare kinds
# through this table or `isinstance(t, Enum)`, never by the kind's name.
C_KEYWORDS: dict[Kind, str] = {
    Kind.STRUCT: "struct",
    Kind.UNION: "union",
    Kind.ENUM: "enum",
    Kind.ENUM64: "enum",
}


def c_keyword(t: Type) -> str:
    """``struct``/``union``/``enum`` for the kinds that have a C keyword, else ""."""
    return C_KEYWORDS.get(t.kind, "")


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
