"""BTF types from clang's record layout: what the formatter needs for a struct BTF lacks.

Offsets, sizes and bitfields come from clang (the compiler that laid out the object), never
from our own arithmetic; members reuse the object's BTF types wherever a name and size match,
so a synthesised struct differs from clang's own only in its ids.
"""

from __future__ import annotations

from collections.abc import Callable

from ..btf.types import (
    Array,
    Enum,
    EnumValue,
    Float,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Member,
    Param,
    Ptr,
    Qualifier,
    Spec,
    Struct,
    Type,
    Typedef,
    Union_,
)
from ..errors import SourceError
from ._clang import CType, Node
from .infer import Record

_INT_KINDS: dict[str, tuple[str, IntEncoding]] = {
    "CHAR_S": ("char", IntEncoding.SIGNED),
    "CHAR_U": ("char", IntEncoding.NONE),
    "SCHAR": ("signed char", IntEncoding.SIGNED),
    "UCHAR": ("unsigned char", IntEncoding.NONE),
    "SHORT": ("short", IntEncoding.SIGNED),
    "USHORT": ("unsigned short", IntEncoding.NONE),
    "INT": ("int", IntEncoding.SIGNED),
    "UINT": ("unsigned int", IntEncoding.NONE),
    "LONG": ("long", IntEncoding.SIGNED),
    "ULONG": ("unsigned long", IntEncoding.NONE),
    "LONGLONG": ("long long", IntEncoding.SIGNED),
    "ULONGLONG": ("unsigned long long", IntEncoding.NONE),
    "INT128": ("__int128", IntEncoding.SIGNED),
    "UINT128": ("unsigned __int128", IntEncoding.NONE),
    "BOOL": ("_Bool", IntEncoding.BOOL),
}
_FLOAT_KINDS = {"FLOAT": "float", "DOUBLE": "double", "LONGDOUBLE": "long double"}
_SIGNED_INT_KINDS = frozenset(k for k, (_, enc) in _INT_KINDS.items() if enc & IntEncoding.SIGNED)


class Builder:
    """Appends types to a BTF spec, reusing what it already holds where names match.

    Ids are handed out before a record's members are built, so a struct that points at
    itself refers to its own fresh id. ``signed_enums``: whether the compiling clang marks
    enums with a negative value signed (kind_flag), as clang >= 15 does.
    """

    def __init__(self, btf: Spec, *, signed_enums: bool) -> None:
        self.btf = btf
        self.signed_enums = signed_enums
        self.new: list[Type | None] = []
        self.where_of: dict[int, str] = {}  # id -> "file:line" of synthesised named types
        self._named: dict[tuple[Kind, str], int] = {}
        self._ints: dict[tuple[str, int, IntEncoding], int] = {}
        for t in btf.types:
            if isinstance(t, Int):
                self._ints.setdefault((t.name, t.size, t.encoding), t.id)
            elif t.name and t.kind in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.TYPEDEF,
                                       Kind.FWD, Kind.FLOAT):
                self._named.setdefault((t.kind, t.name), t.id)
        self._cache: dict[object, int] = {}
        # by declaration (clang's cursor identity): a macro can put two records on one line
        self._records: dict[Node, int] = {}

    def spec(self) -> Spec:
        assert all(t is not None for t in self.new)
        return Spec(types=(*self.btf.types, *(t for t in self.new if t is not None)),
                    byteorder=self.btf.byteorder)

    def _reserve(self) -> int:
        self.new.append(None)
        return len(self.btf.types) + len(self.new) - 1

    def _set(self, tid: int, t: Type) -> int:
        self.new[tid - len(self.btf.types)] = t
        return tid

    def _add(self, key: object, make: Callable[[int], Type]) -> int:
        tid = self._cache.get(key)
        if tid is None:
            tid = self._reserve()
            self._cache[key] = tid
            self._set(tid, make(tid))
        return tid

    def existing(self, kind: Kind, name: str, size: int) -> int | None:
        tid = self._named.get((kind, name))
        if tid is None:
            return None
        try:
            return tid if self.btf.sizeof(tid) == size else None
        except ValueError:
            return None

    def type_id(self, t: CType, where: str) -> int:
        base = self._unqualified(t, where)
        # clang writes `const volatile T` as CONST -> VOLATILE -> T
        for on, kind in ((t.is_restrict, Kind.RESTRICT), (t.is_volatile, Kind.VOLATILE),
                         (t.is_const, Kind.CONST)):
            if on:
                base = self._qualifier(kind, base)
        return base

    def _qualifier(self, kind: Kind, inner: int) -> int:
        return self._add(("q", kind, inner), lambda i: Qualifier(i, "", inner, kind))

    def _unqualified(self, t: CType, where: str) -> int:
        kind = t.kind
        if kind == "ELABORATED":
            return self.type_id(t.named(), where)
        if kind == "VOID":
            return 0
        if kind in _INT_KINDS:
            name, enc = _INT_KINDS[kind]
            size = t.size
            known = self._ints.get((name, size, enc))
            if known is not None:
                return known
            return self._add(("int", name, size, enc),
                             lambda i: Int(i, name, size, enc, 0, size * 8))
        if kind in _FLOAT_KINDS:
            fname, size = _FLOAT_KINDS[kind], t.size
            known = self.existing(Kind.FLOAT, fname, size)
            return known if known is not None else self._add(
                ("float", fname), lambda i: Float(i, fname, size))
        if kind == "TYPEDEF":
            return self._typedef(t.declaration(), where)
        if kind == "RECORD":
            return self.record(t.declaration(), force=False)
        if kind == "ENUM":
            return self._enum(t.declaration())
        if kind == "POINTER":
            target = self._pointer_target(t.pointee(), where)
            return self._add(("ptr", target), lambda i: Ptr(i, "", target))
        if kind in ("CONSTANTARRAY", "INCOMPLETEARRAY"):
            elem = self.type_id(t.element(), where)
            n = t.count if kind == "CONSTANTARRAY" else 0
            index = self._array_index_type()
            return self._add(("array", elem, n), lambda i: Array(i, "", elem, index, n))
        raise SourceError(f"type '{t.spelling}' ({kind}) has no BTF equivalent", where=where)

    def _array_index_type(self) -> int:
        # clang's BTF indexes every array by this made-up int
        key = ("__ARRAY_SIZE_TYPE__", 4, IntEncoding.NONE)
        known = self._ints.get(key)
        if known is not None:
            return known
        return self._add(("int", *key),
                         lambda i: Int(i, "__ARRAY_SIZE_TYPE__", 4, IntEncoding.NONE, 0, 32))

    def _pointer_target(self, t: CType, where: str) -> int:
        """Pointers are u64 to user space: name their target without laying it out."""
        while t.kind == "ELABORATED":
            t = t.named()
        kind = t.kind
        if kind in ("FUNCTIONPROTO", "FUNCTIONNOPROTO"):
            ret = self._pointer_target(t.result(), where)
            params = tuple(Param("", self._pointer_target(p, where)) for p in t.params())
            return self._add(("proto", ret, params), lambda i: FuncProto(i, "", ret, params))
        if kind == "RECORD":
            decl = t.declaration()
            tag = decl.tag
            is_union = decl.kind == "UNION_DECL"
            if tag:
                size = t.size
                rkind = Kind.UNION if is_union else Kind.STRUCT
                known = self.existing(rkind, tag, size) if size > 0 else None
                if known is None:
                    known = self._records.get(decl)
                if known is not None:
                    return known
                fwd = self._named.get((Kind.FWD, tag))
                if fwd is not None:
                    return fwd
                return self._add(("fwd", tag, is_union), lambda i: Fwd(i, tag, is_union))
            return 0
        if kind == "TYPEDEF":
            name = t.declaration().spelling
            known = self._named.get((Kind.TYPEDEF, name))
            if known is not None:
                return known
            # only scalars behind typedefs are laid out; records stay forward declarations
            if t.canonical().kind == "RECORD":
                return self._pointer_target(t.canonical(), where)
        return self.type_id(t, where)

    def _typedef(self, decl: Node, where: str) -> int:
        name = decl.spelling
        under = decl.underlying
        size = under.canonical().size
        known = self.existing(Kind.TYPEDEF, name, size) if size > 0 else None
        if known is not None:
            return known
        key = ("typedef", decl)
        if key in self._cache:
            return self._cache[key]
        tid = self._reserve()
        self._cache[key] = tid
        target = self.type_id(under, f"{where}: typedef {name}")
        return self._set(tid, Typedef(tid, name, target))

    def _enum(self, decl: Node) -> int:
        name = decl.tag
        size = decl.type.size
        if name:
            known = self.existing(Kind.ENUM, name, size)
            if known is not None:
                return known
        values = tuple(EnumValue(c.spelling, c.enum_value) for c in decl.children()
                       if c.kind == "ENUM_CONSTANT_DECL")
        # an enum's integer type is signed exactly when it has a negative value
        signed = self.signed_enums and (
            decl.enum_int_type.canonical().kind in _SIGNED_INT_KINDS)
        if not signed:
            mask = (1 << (size * 8)) - 1
            values = tuple(EnumValue(v.name, v.value & mask) for v in values)
        kind = Kind.ENUM64 if size > 4 else Kind.ENUM
        loc = decl.loc

        def make(i: int) -> Enum:
            self.where_of[i] = f"{loc.file}:{loc.line}"
            return Enum(i, name, size, signed, values, kind)

        return self._add(("enum", decl), make)

    def record(self, decl: Node, *, force: bool) -> int:
        """The BTF id for a struct/union decl: reused by name unless ``force``."""
        if decl in self._records:
            return self._records[decl]
        loc = decl.loc
        is_union = decl.kind == "UNION_DECL"
        name = decl.tag
        size = decl.type.size
        what = f"{'union' if is_union else 'struct'} {name or decl.type.spelling}"
        if size < 0:
            raise SourceError(f"{what} is incomplete: no layout to take", where=str(loc))
        if name and not force:
            known = self.existing(Kind.UNION if is_union else Kind.STRUCT, name, size)
            if known is not None:
                return known
        tid = self._reserve()
        self._records[decl] = tid
        members: list[Member] = []
        for f in decl.type.fields():
            fname = f.spelling
            if f.is_bitfield and not fname:
                continue  # `int :0;` and friends: clang emits no member for them
            if not fname.isidentifier():
                fname = ""  # an anonymous struct/union member
            mwhere = f"{loc}: {what}.{fname or '(anonymous)'}"
            members.append(Member(
                name=fname,
                type=self.type_id(f.type, mwhere),
                bit_offset=f.field_offset,
                bitfield_size=f.bitfield_width if f.is_bitfield else 0,
            ))
        if name:
            self.where_of[tid] = f"{loc.file}:{loc.line}"
        cls = Union_ if is_union else Struct
        return self._set(tid, cls(tid, name, size, tuple(members)))

    def for_record(self, rec: Record, *, force: bool = False) -> int:
        """The id user space should see for ``rec``: the typedef for an anonymous record."""
        if rec.typedef:
            tid = self._named.get((Kind.TYPEDEF, rec.typedef))
            if tid is not None and not force:
                t = self.btf.resolve(tid)
                if isinstance(t, (Struct, Union_)) and t.size == rec.decl.type.size:
                    return tid
            target = self.record(rec.decl, force=force)
            loc = rec.decl.loc

            def make(i: int) -> Typedef:
                self.where_of[i] = f"{loc.file}:{loc.line}"
                return Typedef(i, rec.typedef, target)

            return self._add(("typedef-of", rec.decl), make)
        return self.record(rec.decl, force=force)


