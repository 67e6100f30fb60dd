"""BTF types -> a ctypes declaration model (frozen dataclasses, no Python text).

Layout is made explicit: the formatter walks the BTF member offsets the way ctypes will
place fields (natural alignment, on x86-64 and BPF alike: u64 aligns to 8), inserts
``_pad_N`` bytes wherever BTF puts a member later than ctypes would, and switches a record
to ``_pack_ = 1`` when a member sits below its natural alignment. Bitfields become real
ctypes bitfields only in the one case every ctypes version lays out like clang (a run of
same-size bitfields filling storage units from a unit boundary, with nothing placed inside
the unit's tail); otherwise they become raw byte storage (``_bitfield_N``) plus ``Bitfield``
descriptors. Both decisions (``_pack_``, and real bitfields or raw storage) are made first by
pure predicates over BTF (``_needs_pack``, ``_real_bitfields_fit``), then the layout is built
once. Every record is then built with ctypes at generation time and compared with BTF, so
a layout the module would get wrong fails here with a LayoutError instead.

128-bit integer members are stored as ``ctypes.c_uint8 * 16`` (ctypes has no 128-bit type)
named ``_raw_N`` and read as ``int`` through a ``Bitfield`` of 128 bits; elsewhere (map keys,
arrays of them) they stay byte arrays, with a comment naming the C type.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import naming
from .btf.types import (
    Array,
    Enum,
    Float,
    FuncProto,
    Int,
    IntEncoding,
    Kind,
    Ptr,
    Spec,
    Struct,
    Union_,
    c_keyword,
)
from .errors import LayoutError


@dataclass(frozen=True)
class Scalar:
    """A ctypes simple type, by its attribute name in ``ctypes``."""

    ctype: str  # "c_uint32"
    py: str  # the Python value type: "int", "float", "bool", "bytes"
    size: int


@dataclass(frozen=True)
class ClassRef:
    """A generated Structure/Union class."""

    type_id: int
    name: str


@dataclass(frozen=True)
class ArrayOf:
    elem: CRef
    length: int


CRef = Scalar | ClassRef | ArrayOf


@dataclass(frozen=True)
class Field:
    name: str
    ctype: CRef
    offset: int  # byte offset; for a real bitfield, the offset of its storage unit
    bits: int = 0  # a real ctypes bitfield of this width
    comment: str = ""  # the C type, for pointers and 128-bit integers
    c_member: bool = True  # False for padding and bitfield storage
    bit_offset: int = 0  # BTF bit offset (real bitfields)
    enum: str = ""  # the generated IntEnum class of an enum-typed member


@dataclass(frozen=True)
class BitfieldAttr:
    name: str
    storage: str
    bit: int  # from the start of the storage bytes, little-endian bit numbering
    bits: int
    signed: bool


@dataclass(frozen=True)
class Record:
    type_id: int
    name: str
    c_name: str  # "struct foo", "foo_t" for a typedef'd anonymous struct, "" otherwise
    doc: str
    is_union: bool
    size: int
    pack: bool
    fields: tuple[Field, ...]
    anonymous: tuple[str, ...]
    bitfields: tuple[BitfieldAttr, ...]
    members: tuple[str, ...] = ()  # the C members' Python names in C order (anonymous: _anonN)

    @property
    def offsets(self) -> dict[str, int]:
        """What ``check_layout`` verifies at import: every field except real bitfields."""
        return {f.name: f.offset for f in self.fields if f.bits == 0}


@dataclass(frozen=True)
class EnumDecl:
    type_id: int
    name: str
    c_name: str
    doc: str
    size: int
    signed: bool
    values: tuple[tuple[str, int], ...]


U8 = Scalar("c_uint8", "int", 1)
U64 = Scalar("c_uint64", "int", 8)
_FLOATS = {4: Scalar("c_float", "float", 4), 8: Scalar("c_double", "float", 8)}


def int_scalar(size: int, signed: bool) -> Scalar:
    return Scalar(f"c_{'' if signed else 'u'}int{size * 8}", "int", size)


@dataclass
class _Builder:
    name: str
    is_union: bool
    pack: bool
    real_bitfields: bool
    fields: list[Field]
    bitfields: list[BitfieldAttr]
    names: naming.NameTable
    cur: int = 0


class Formatter:
    """Lays out the struct/union/enum types of one Spec; ``names`` gives every class name."""

    def __init__(
        self,
        spec: Spec,
        names: Mapping[int, str],
        *,
        c_names: Mapping[int, str] | None = None,
        docs: Mapping[int, str] | None = None,
    ) -> None:
        self.spec = spec
        self.names = names
        self.c_names = c_names or {}
        self.docs = docs or {}
        self._records: dict[int, Record] = {}
        self._classes: dict[int, type[Any]] = {}

    # -- type references -------------------------------------------------------------

    def ref(self, type_id: int, *, where: str = "") -> tuple[CRef, str]:
        """The ctypes type of a BTF type used by value, and a comment naming its C type when
        the ctypes spelling hides it (pointers, 128-bit integers)."""
        t = self.spec.resolve(type_id)
        where = where or f"type id {type_id}"
        if isinstance(t, Int):
            if t.encoding & IntEncoding.BOOL:
                return Scalar("c_bool", "bool", 1), ""
            if t.size in (1, 2, 4, 8):
                return int_scalar(t.size, t.signed), ""
            return ArrayOf(U8, t.size), c_type_name(self.spec, type_id)
        if isinstance(t, Float):
            if t.size in _FLOATS:
                return _FLOATS[t.size], ""
            return ArrayOf(U8, t.size), c_type_name(self.spec, type_id)
        if isinstance(t, Enum):
            return int_scalar(t.size, t.signed), ""
        if isinstance(t, Ptr):
            return U64, c_type_name(self.spec, type_id)
        if isinstance(t, Array):
            elem_t = self.spec.resolve(t.type)
            if isinstance(elem_t, Int) and _is_char(elem_t):
                return ArrayOf(Scalar("c_char", "bytes", 1), t.nelems), ""
            elem, comment = self.ref(t.type, where=where)
            if comment:
                comment = c_type_name(self.spec, type_id)
            return ArrayOf(elem, t.nelems), comment
        if isinstance(t, (Struct, Union_)):
            if t.id not in self.names:
                raise LayoutError(f"{_describe(t)} is used but was not collected", where=where)
            return ClassRef(t.id, self.names[t.id]), ""
        raise LayoutError(f"{t.kind.name} cannot be used by value", where=where)

    def size_of(self, ref: CRef) -> int:
        if isinstance(ref, Scalar):
            return ref.size
        if isinstance(ref, ArrayOf):
            return ref.length * self.size_of(ref.elem)
        return self.record(ref.type_id).size

    def align_of(self, ref: CRef) -> int:
        """Alignment as ctypes computes it (not C: ctypes never sees aligned(N))."""
        if isinstance(ref, Scalar):
            return ref.size
        if isinstance(ref, ArrayOf):
            return self.align_of(ref.elem)
        rec = self.record(ref.type_id)
        if rec.pack:
            return 1
        return max((self.align_of(f.ctype) for f in rec.fields), default=1)

    # -- enums --------------------------------------------------------------------------

    def enum(self, type_id: int) -> EnumDecl:
        t = self.spec[type_id]
        assert isinstance(t, Enum)
        table = naming.NameTable()
        values = tuple((table.take(naming.enum_member(v.name)), v.value) for v in t.values)
        return EnumDecl(
            type_id=type_id,
            name=self.names[type_id],
            c_name=self.c_names.get(type_id, ""),
            doc=self.docs.get(type_id, _describe(t)),
            size=t.size,
            signed=t.signed,
            values=values,
        )

    # -- structs and unions -----------------------------------------------------------

    def record(self, type_id: int) -> Record:
        rec = self._records.get(type_id)
        if rec is None:
            rec = self._layout(type_id)
            self._records[type_id] = rec
            self._verify(rec)
        return rec

    def _layout(self, type_id: int) -> Record:
        """Decide the strategy (real ctypes bitfields? ``_pack_``?) from BTF alone, then
        build the one layout it gives; ``_verify`` then checks it against ctypes."""
        t = self.spec[type_id]
        assert isinstance(t, (Struct, Union_))
        real = self._real_bitfields_fit(t)
        pack = self._needs_pack(t, real_bitfields=real)
        if pack and real:  # ctypes packs real bitfields differently: raw storage instead
            real, pack = False, self._needs_pack(t, real_bitfields=False)
        return self._try_layout(t, pack=pack, real_bitfields=real)

    # -- the two decisions, pure predicates over BTF (as libbpf-cargo decides packing) --

    def _runs(self, t: Struct | Union_) -> list[tuple[Any, list[Any]]]:
        """Members grouped: (member, []) for a plain member, (None, run) for a bitfield run."""
        out: list[tuple[Any, list[Any]]] = []
        for m in t.members:
            if not m.bitfield_size:
                out.append((m, []))
            elif out and out[-1][0] is None:
                out[-1][1].append(m)
            else:
                out.append((None, [m]))
        return out

    def _declarable(self, run: list[Any]) -> list[Scalar] | None:
        """The ctypes ints a run of bitfields is declared with, if ctypes can declare all."""
        bases = [self._bitfield_base(m.type)[0] for m in run]
        return None if any(b is None for b in bases) else bases  # type: ignore[return-value]

    def _real_bitfields_fit(self, t: Struct | Union_) -> bool:
        """Whether real ctypes bitfields reproduce BTF: every declarable run is a run of
        same-size named bitfields filling units from a unit boundary, and nothing is placed
        inside a unit's tail (ctypes opens a unit at the next aligned offset and fills it
        while the next bitfield of the same size fits; clang agrees exactly then)."""
        if isinstance(t, Union_) or self.spec.byteorder != "little":
            return False
        cur = 0
        for m, run in self._runs(t):
            if m is not None:
                off = m.bit_offset // 8
                if off < cur:
                    return False
                cur = off + self.size_of(self.ref(m.type)[0])
                continue
            bases = self._declarable(run)
            if bases is None:
                for start, end in _storage_blocks(run, union=False):
                    if start < cur:
                        return False
                    cur = end
                continue
            unit_size = unit_start = used = 0
            for b, base in zip(run, bases, strict=True):
                if not b.name or (unit_size and base.size != unit_size):
                    return False
                if not unit_size or used + b.bitfield_size > unit_size * 8:
                    start = b.bit_offset // (base.size * 8) * base.size
                    if start < _align_up(cur, base.size):
                        return False
                    unit_start, unit_size, used = start, base.size, 0
                    cur = start + unit_size
                if unit_start * 8 + used != b.bit_offset:
                    return False
                used += b.bitfield_size
        return cur <= t.size

    def _needs_pack(self, t: Struct | Union_, *, real_bitfields: bool) -> bool:
        """Whether ``_pack_ = 1`` is needed: a member below its natural alignment, or a size
        that natural alignment would round up."""
        union = isinstance(t, Union_)
        align, natural = 1, 0
        for m, run in self._runs(t):
            if m is not None:
                ref = self.ref(m.type)[0]
                a = self.align_of(ref)
                if not union and (m.bit_offset // 8) % a:
                    return True
                align = max(align, a)
                natural = max(natural, self.size_of(ref))
                continue
            bases = self._declarable(run) if real_bitfields else None
            if bases is not None:
                align = max(align, *(b.size for b in bases))
            natural = max(natural, *(end for _, end in _storage_blocks(run, union=union)))
        if union:
            return _align_up(max(natural, t.size), align) != t.size
        return t.size % align != 0

    def _try_layout(self, t: Struct | Union_, *, pack: bool, real_bitfields: bool) -> Record:
        b = _Builder(
            name=self.names[t.id],
            is_union=isinstance(t, Union_),
            pack=pack,
            real_bitfields=real_bitfields and not pack and self.spec.byteorder == "little",
            fields=[],
            bitfields=[],
            names=naming.NameTable(),
        )
        where = f"{_describe(t)} (type id {t.id})"
        anonymous: list[str] = []
        # Claim the C member names first so generated names (padding, storage) yield to them
        for m in t.members:
            if m.name:
                b.names.claim(
                    naming.field_name(m.name),
                    what=f"{where}: member {m.name!r}",
                    hint="two members escape to the same Python name; rename one in C",
                )
        members = list(t.members)
        anon_index = 0
        i = 0
        while i < len(members):
            m = members[i]
            if m.bitfield_size:
                j = i
                while j < len(members) and members[j].bitfield_size:
                    j += 1
                self._bitfield_run(b, members[i:j], where)
                i = j
                continue
            mwhere = f"{where}: member {m.name or '(anonymous)'}"
            if m.bit_offset % 8:
                raise LayoutError(f"offset {m.bit_offset} bits is not byte aligned", where=mwhere)
            ref, comment = self.ref(m.type, where=mwhere)
            if m.name:
                name = naming.field_name(m.name)
            else:
                name = b.names.take(naming.anonymous_field(anon_index))
                anon_index += 1
                anonymous.append(name)
            off = 0 if b.is_union else m.bit_offset // 8
            target = self.spec.resolve(m.type)
            if m.name and _is_wide_int(target):
                # ctypes has no 128-bit int: raw bytes, read and written as an int through
                # the same descriptor as bitfields kept in raw storage
                assert isinstance(target, Int)
                storage = b.names.take(naming.raw_storage(off))
                self._place(b, Field(storage, ref, off, comment=comment, c_member=False), mwhere)
                b.bitfields.append(BitfieldAttr(name, storage, 0, 8 * target.size, target.signed))
                i += 1
                continue
            enum = self.names.get(target.id, "") if isinstance(target, Enum) else ""
            self._place(b, Field(name, ref, off, comment=comment, enum=enum), mwhere)
            i += 1
        self._finish(b, t, where)
        anon = iter(anonymous)
        c_order = tuple(
            naming.field_name(m.name) if m.name else next(anon)
            for m in t.members
            if m.name or not m.bitfield_size
        )
        return Record(
            type_id=t.id,
            name=b.name,
            c_name=self.c_names.get(t.id, ""),
            doc=self.docs.get(t.id, _describe(t)),
            is_union=b.is_union,
            size=t.size,
            pack=pack,
            fields=tuple(b.fields),
            anonymous=tuple(anonymous),
            bitfields=tuple(b.bitfields),
            members=c_order,
        )

    def _place(self, b: _Builder, f: Field, where: str) -> None:
        """Append ``f`` where ctypes will put it, padding up to its BTF offset first."""
        if b.is_union:
            b.fields.append(f)
            return
        align = 1 if b.pack else self.align_of(f.ctype)
        if f.offset % align:
            raise _misplanned(where, f"offset {f.offset} is not {align}-aligned")
        if f.offset < b.cur:
            if not b.real_bitfields:
                raise LayoutError(
                    f"BTF offset {f.offset} overlaps the previous member (ctypes offset "
                    f"{b.cur})",
                    where=where,
                )
            raise _misplanned(where, "real bitfields overlap")
        if _align_up(b.cur, align) != f.offset:
            b.fields.append(_pad(b, b.cur, f.offset - b.cur))
        b.fields.append(f)
        b.cur = f.offset + self.size_of(f.ctype)

    def _bitfield_run(self, b: _Builder, run: list[Any], where: str) -> None:
        bases = [self._bitfield_base(m.type) for m in run]
        if b.real_bitfields and not b.is_union and all(s is not None for s, _ in bases):
            self._real_bitfields(b, run, bases, where)
            return
        # Raw storage: consecutive bitfields whose bytes touch or overlap share one block
        blocks: list[tuple[int, int, list[tuple[Any, bool]]]] = []
        for m, (_, signed) in zip(run, bases, strict=True):
            bit = 0 if b.is_union else m.bit_offset
            start, end = bit // 8, (bit + m.bitfield_size + 7) // 8
            if blocks and start <= blocks[-1][1]:
                s, e, ms = blocks[-1]
                blocks[-1] = (s, max(e, end), [*ms, (m, signed)])
            else:
                blocks.append((start, end, [(m, signed)]))
        for start, end, ms in blocks:
            storage = b.names.take(naming.bitfield_storage(start))
            self._place(
                b, Field(storage, ArrayOf(U8, end - start), start, c_member=False), where
            )
            for m, signed in ms:
                bit = 0 if b.is_union else m.bit_offset
                b.bitfields.append(
                    BitfieldAttr(
                        naming.field_name(m.name) if m.name else b.names.take("_unnamed"),
                        storage,
                        bit - start * 8,
                        m.bitfield_size,
                        signed,
                    )
                )

    def _bitfield_base(self, type_id: int) -> tuple[Scalar | None, bool]:
        """The ctypes int a bitfield is declared with (None: ctypes cannot declare it)."""
        t = self.spec.resolve(type_id)
        if isinstance(t, Int) and not t.encoding & IntEncoding.BOOL and t.size in (1, 2, 4, 8):
            return int_scalar(t.size, t.signed), t.signed
        if isinstance(t, Enum) and t.size in (1, 2, 4, 8):
            return int_scalar(t.size, t.signed), t.signed
        signed = isinstance(t, Int) and t.signed
        return None, signed

    def _real_bitfields(
        self, b: _Builder, run: list[Any], bases: list[tuple[Scalar | None, bool]], where: str
    ) -> None:
        # ctypes (all versions) opens a unit of the declared size at the next aligned offset
        # and keeps filling it while the next bitfield of the same size fits; clang agrees
        # exactly when BTF shows the same packing.
        unit_size = unit_start = used = 0
        for m, (base, _) in zip(run, bases, strict=True):
            assert base is not None
            if not m.name or (unit_size and base.size != unit_size):
                raise _misplanned(where, f"member {m.name or '(unnamed)'}")
            if not unit_size or used + m.bitfield_size > unit_size * 8:
                natural = _align_up(b.cur, base.size)
                start = m.bit_offset // (base.size * 8) * base.size
                if start < natural:
                    raise _misplanned(where, f"member {m.name} shares a unit")
                if start != natural:
                    b.fields.append(_pad(b, b.cur, start - b.cur))
                unit_start, unit_size, used = start, base.size, 0
                b.cur = start + unit_size
            if unit_start * 8 + used != m.bit_offset:
                raise _misplanned(where, f"member {m.name} at bit {m.bit_offset}")
            b.fields.append(
                Field(
                    naming.field_name(m.name),
                    base,
                    unit_start,
                    bits=m.bitfield_size,
                    bit_offset=m.bit_offset,
                )
            )
            used += m.bitfield_size

    def _finish(self, b: _Builder, t: Struct | Union_, where: str) -> None:
        align = 1 if b.pack else max((self.align_of(f.ctype) for f in b.fields), default=1)
        if b.is_union:
            natural = max((self.size_of(f.ctype) for f in b.fields), default=0)
            if natural < t.size:
                b.fields.append(_pad(b, 0, t.size))
                natural = t.size
            if _align_up(natural, align) != t.size:
                raise _misplanned(where, f"size {t.size}")
            return
        if b.cur > t.size:
            if b.real_bitfields:
                raise _misplanned(where, "real bitfields overlap")
            raise LayoutError(f"members end at {b.cur}, past the size {t.size}", where=where)
        if b.cur < t.size and _align_up(b.cur, align) != t.size:
            b.fields.append(_pad(b, b.cur, t.size - b.cur))
            b.cur = t.size
        if _align_up(b.cur, align) != t.size:
            raise _misplanned(where, f"size {t.size} is not a multiple of alignment {align}")

    # -- generation-time check -------------------------------------------------------

    def materialize(self, ref: CRef) -> type[Any]:
        """The real ctypes type for ``ref`` (records built on first use)."""
        if isinstance(ref, Scalar):
            return getattr(ctypes, ref.ctype)  # type: ignore[no-any-return]
        if isinstance(ref, ArrayOf):
            return self.materialize(ref.elem) * ref.length  # type: ignore[no-any-return]
        cls = self._classes.get(ref.type_id)
        if cls is None:
            rec = self.record(ref.type_id)
            cls = self._classes[ref.type_id]
            assert rec.type_id == ref.type_id
        return cls

    def _verify(self, rec: Record) -> None:
        base: type[Any] = ctypes.Union if rec.is_union else ctypes.Structure
        ns: dict[str, Any] = {}
        if rec.pack:
            ns["_pack_"] = 1
        if rec.anonymous:
            ns["_anonymous_"] = rec.anonymous
        ns["_fields_"] = [
            (f.name, self.materialize(f.ctype), f.bits) if f.bits
            else (f.name, self.materialize(f.ctype))
            for f in rec.fields
        ]  # fmt: skip
        cls = type(rec.name, (base,), ns)
        self._classes[rec.type_id] = cls
        where = f"{rec.doc} (class {rec.name})"
        if ctypes.sizeof(cls) != rec.size:
            raise LayoutError(f"BTF size {rec.size}, ctypes size {ctypes.sizeof(cls)}", where=where)
        for f in rec.fields:
            desc = getattr(cls, f.name)
            if f.bits:
                bit_offset = getattr(desc, "bit_offset", None)
                got = desc.offset * 8 + (desc.size & 0xFFFF if bit_offset is None else bit_offset)
                if got != f.bit_offset:
                    raise LayoutError(
                        f"member {f.name}: BTF bit offset {f.bit_offset}, ctypes bit offset {got}",
                        where=where,
                    )
            elif desc.offset != f.offset:
                raise LayoutError(
                    f"member {f.name}: BTF offset {f.offset}, ctypes offset {desc.offset}",
                    where=where,
                )


def _pad(b: _Builder, offset: int, size: int) -> Field:
    return Field(b.names.take(naming.padding(offset)), ArrayOf(U8, size), offset, c_member=False)


def _misplanned(where: str, what: str) -> LayoutError:
    # _layout's predicates chose a strategy this builder cannot follow: a generator bug
    return LayoutError(f"{what}: the layout plan does not hold", where=where)


def _storage_blocks(run: list[Any], *, union: bool) -> list[tuple[int, int]]:
    """Byte ranges [start, end) of raw bitfield storage: touching bitfields share one."""
    blocks: list[tuple[int, int]] = []
    for m in run:
        bit = 0 if union else m.bit_offset
        start, end = bit // 8, (bit + m.bitfield_size + 7) // 8
        if blocks and start <= blocks[-1][1]:
            blocks[-1] = (blocks[-1][0], max(blocks[-1][1], end))
        else:
            blocks.append((start, end))
    return blocks


def _align_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _is_wide_int(t: Any) -> bool:
    """An integer ctypes cannot declare (``__int128``)."""
    return (isinstance(t, Int) and not t.encoding & IntEncoding.BOOL
            and t.size not in (1, 2, 4, 8))  # fmt: skip


def _is_char(t: Int) -> bool:
    return t.size == 1 and (bool(t.encoding & IntEncoding.CHAR) or t.name == "char")


def _describe(t: Any) -> str:
    word = c_keyword(t)
    return f"{word} {t.name}" if t.name else f"anonymous {word}"


def c_type_name(spec: Spec, type_id: int) -> str:
    """A C spelling of a type for comments: ``struct task_struct *``, ``char *[4]``."""
    dims = ""
    t = spec[type_id]
    while isinstance(t, Array):
        dims += f"[{t.nelems}]"
        t = spec[t.type]
    if isinstance(t, Ptr):
        target = spec[t.type]
        if isinstance(target, FuncProto):
            base = "function pointer"
        else:
            inner = c_type_name(spec, t.type)
            base = inner + ("*" if inner.endswith("*") else " *")
    elif t.kind == Kind.VOID:
        base = "void"
    elif t.kind in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
        base = f"{t.kind.name.lower()} {c_type_name(spec, t.type)}"  # type: ignore[union-attr]
    elif t.kind == Kind.TYPE_TAG:
        base = c_type_name(spec, t.type)  # type: ignore[union-attr]
    elif c_keyword(t) or t.kind == Kind.FWD:
        word = c_keyword(t)
        if not word:
            word = "union" if getattr(t, "is_union", False) else "struct"
        base = f"{word} {t.name or '(anonymous)'}"
    else:
        base = t.name or t.kind.name.lower()
    return base + dims
