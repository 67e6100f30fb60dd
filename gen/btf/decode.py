"""Bytes of a .BTF section -> ``Spec``.

Speed matters (vmlinux has ~130k types; the bench compares us with bpftool), so: the type
section is read once into a list of u32 words (every BTF record is whole words); names come
from a dict built in C from the split string table; trailers are built by ``map`` over one
slice of words; identical ``Param`` objects are shared (vmlinux repeats four in five); model
objects are built by plain-class twins of the frozen dataclasses (see ``_maker``); and the
garbage collector is paused while ~230k objects that are never garbage are created. Errors
are not checked per word: a record running past the section surfaces as IndexError inside
the loop and becomes a BTFError there, where the type id and offset are still in hand.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import fields
from itertools import accumulate, repeat
from operator import and_, lshift, or_, rshift
from typing import Any

from ..errors import BTFError
from . import wire
from .types import (
    Array,
    DataSec,
    DeclTag,
    Enum,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Linkage,
    Member,
    Param,
    Ptr,
    Qualifier,
    Spec,
    Struct,
    Type,
    Typedef,
    Union_,
    Var,
    VarSecInfo,
    Void,
)

__all__ = ["decode_btf"]

_LINKAGE = (Linkage.STATIC, Linkage.GLOBAL, Linkage.EXTERN)
_INT_ENCODING = tuple(IntEncoding(e) for e in range(16))
_QUALIFIER_KINDS = {
    int(Kind.VOLATILE): Kind.VOLATILE,
    int(Kind.CONST): Kind.CONST,
    int(Kind.RESTRICT): Kind.RESTRICT,
    int(Kind.TYPE_TAG): Kind.TYPE_TAG,
}


class _BadName(Exception):
    def __init__(self, name_off: int) -> None:
        super().__init__(name_off)
        self.name_off = name_off


class _Names(dict[int, str]):
    """String table offset -> name. Prefilled with every string start; ``__missing__``
    handles offsets into the middle of a string (legal BTF) and rejects the rest."""

    __slots__ = ("_table",)

    def __init__(self, table: str | bytes) -> None:
        super().__init__()
        self._table = table

    def __missing__(self, off: int) -> str:
        table = self._table
        if not 0 <= off < len(table):
            raise _BadName(off)
        if isinstance(table, str):
            name = table[off : table.index("\0", off)]
        else:
            name = table[off : table.index(b"\0", off)].decode("utf-8", "replace")
        self[off] = name
        return name


def _string_table(data: bytes, start: int, length: int, where: str) -> _Names:
    raw = bytes(data[start : start + length])
    if not raw or raw[0] != 0 or raw[-1] != 0:
        raise BTFError(
            f"offset {start}: string section of {length} bytes must start and end with NUL",
            where=where,
        )
    pieces: list[str]
    table: str | bytes
    if raw.isascii():
        # BTF offsets count bytes; for ASCII, characters and bytes coincide.
        table = raw.decode("ascii")
        pieces = table.split("\0")
        lens = list(map(len, pieces))
    else:
        table = raw
        bpieces = raw.split(b"\0")
        pieces = [p.decode("utf-8", "replace") for p in bpieces]
        lens = list(map(len, bpieces))
    names = _Names(table)
    starts = accumulate(map((1).__add__, lens), initial=0)
    names.update(zip(starts, pieces, strict=False))  # starts runs one past the last string
    return names


def _s32(v: int) -> int:
    return v - ((v & 0x80000000) << 1)


def _s64(v: int) -> int:
    return v - ((v & 0x8000000000000000) << 1)


def _record_offsets(w: list[int], start: int) -> list[int]:
    """Byte offset of every type record (index = type id). Only for error reporting."""
    fixed, per = wire.FIXED_WORDS, wire.VLEN_WORDS
    offs = [0]
    i = 0
    while i + 3 <= len(w):
        offs.append(start + 4 * i)
        kind = w[i + 1] >> 24 & 0x1F
        if kind > wire.MAX_KIND:
            break
        i += 3 + fixed[kind] + per[kind] * (w[i + 1] & 0xFFFF)
    return offs


def _refs(t: Type) -> list[int]:
    if isinstance(t, (Ptr, Typedef, Qualifier, Func, Var, DeclTag)):
        return [t.type]
    if isinstance(t, Array):
        return [t.type, t.index_type]
    if isinstance(t, (Struct, Union_)):
        return [m.type for m in t.members]
    if isinstance(t, FuncProto):
        return [t.return_type, *(p.type for p in t.params)]
    if isinstance(t, DataSec):
        return [v.type for v in t.vars]
    return []


def _check_refs(types: list[Type], w: list[int], start: int, where: str) -> None:
    n = len(types)
    offs = _record_offsets(w, start)
    for t in types:
        for ref in _refs(t):
            if ref >= n:
                raise BTFError(
                    f"type id {t.id} at offset {offs[t.id]}: {t.kind.name} refers to type id "
                    f"{ref}, past the last type id {n - 1}",
                    where=where,
                )


def _check_cycles(chain: dict[int, int], types: list[Type], w: list[int], start: int,
                  where: str) -> None:
    """``chain`` maps each typedef/qualifier/array id to the id it stands on; a loop among
    them would make sizes undefined (and send Spec.resolve round forever)."""
    state: dict[int, bool] = {}  # False: on the path being walked, True: known to end
    for first in chain:
        if first in state:
            continue
        path = []
        tid = first
        while tid in chain and tid not in state:
            state[tid] = False
            path.append(tid)
            tid = chain[tid]
        if state.get(tid) is False:
            loop = [*path[path.index(tid) :], tid]
            raise BTFError(
                f"type id {tid} at offset {_record_offsets(w, start)[tid]}: "
                "typedef/qualifier/array cycle "
                + " -> ".join(f"{i} ({types[i].kind.name})" for i in loop),
                where=where,
            )
        for p in path:
            state[p] = True


_Maker = Callable[..., Any]


def _maker(cls: type[Any]) -> _Maker:
    """A constructor equivalent to ``cls(...)`` for the model's frozen slotted dataclasses.

    The generated ``__init__`` of a frozen dataclass goes through ``object.__setattr__`` for
    every field, which is most of the decoder's time on vmlinux. The maker is a plain class
    with the same slots: its ``__init__`` stores each field with an ordinary (specialized)
    attribute store, then the object becomes a ``cls``, which CPython allows between classes
    of identical layout. That builds the same object about twice as fast as the frozen
    ``__init__``. tests/test_btf.py checks that both constructors give equal objects.
    """
    ns: dict[str, Any] = {"cls": cls}
    args: list[str] = []
    body: list[str] = []
    for f in fields(cls):
        if f.init:
            args.append(f.name)
            body.append(f"        self.{f.name} = {f.name}")
        else:
            ns[f"dflt_{f.name}"] = f.default
            body.append(f"        self.{f.name} = dflt_{f.name}")
    src = (f"class Make{cls.__name__}:\n    __slots__ = cls.__slots__\n"
           f"    def __init__(self, {', '.join(args)}):\n" + "\n".join(body)
           + "\n        self.__class__ = cls\n")
    exec(src, ns)  # the same technique dataclasses uses to build __init__
    make: _Maker = ns[f"Make{cls.__name__}"]
    return make


MAKERS: dict[type[Any], _Maker] = {
    cls: _maker(cls)
    for cls in (Array, DataSec, DeclTag, Enum, EnumValue, Float, Func, FuncProto, Fwd, Int,
                Member, Param, Ptr, Qualifier, Struct, Typedef, Union_, Var, VarSecInfo)
}


class _Params(dict[tuple[int, int], Param]):
    """(name_off, type) -> a shared Param: vmlinux's 83k parameters hold 21k distinct ones."""

    __slots__ = ("_make", "_names")

    def __init__(self, names: _Names) -> None:
        super().__init__()
        self._names = names
        self._make = MAKERS[Param]

    def __missing__(self, key: tuple[int, int]) -> Param:
        p: Param = self._make(self._names[key[0]], key[1])
        self[key] = p
        return p


def decode_btf(data: bytes, *, where: str = ".BTF") -> Spec:
    """Decode a raw .BTF section (or /sys/kernel/btf/vmlinux) into a ``Spec``.

    Sizes and offsets are kept exactly as written: clang leaves DATASEC sizes and variable
    offsets at 0 in a .o, and fixing them up from the ELF is the ELF reader's job.
    """
    gc_was_enabled = gc.isenabled()
    # Hundreds of thousands of new objects, none of them garbage: collections triggered
    # along the way only rescan them (a third of the time on vmlinux).
    gc.disable()
    try:
        return _decode(data, where)
    finally:
        if gc_was_enabled:
            gc.enable()


def _decode(data: bytes, where: str) -> Spec:
    hdr = wire.read_header(data, where)
    base = hdr.hdr_len
    type_start = base + hdr.type_off
    names = _string_table(data, base + hdr.str_off, hdr.str_len, where)
    w = wire.u32_words(data, type_start, hdr.type_len, hdr.byteorder)
    nw = len(w)

    types: list[Type] = [Void()]
    add = types.append
    refs: list[int] = []
    ref = refs.append
    more_refs = refs.extend
    chain: dict[int, int] = {}
    param = _Params(names).__getitem__
    linkage = _LINKAGE
    encodings = _INT_ENCODING
    qualifiers = _QUALIFIER_KINDS
    mk = MAKERS
    proto, ptr = mk[FuncProto], mk[Ptr]
    struct, union = mk[Struct], mk[Union_]
    typedef, qualifier, array = mk[Typedef], mk[Qualifier], mk[Array]
    enum, var = mk[Enum], mk[Var]
    func, member, value = mk[Func], mk[Member], mk[EnumValue]
    name_of = names.__getitem__
    int_, fwd, datasec, secinfo = mk[Int], mk[Fwd], mk[DataSec], mk[VarSecInfo]
    float_, decl_tag = mk[Float], mk[DeclTag]

    i = at = 0
    tid = 1
    kind = 0
    try:
        while i < nw:
            at = i
            name = names[w[i]]
            info = w[i + 1]
            su = w[i + 2]
            i += 3
            kind = info >> 24 & 0x1F
            # Ordered by how often each kind occurs in vmlinux.
            if kind == 12:  # FUNC, built inline: it is half of vmlinux
                vlen = info & 0xFFFF
                if vlen > 2:
                    raise BTFError(_at(tid, type_start + 4 * at, f"FUNC linkage {vlen} unknown"))
                add(func(tid, name, su, linkage[vlen]))
                ref(su)
            elif kind == 13:  # FUNC_PROTO
                e = i + 2 * (info & 0xFFFF)
                if e > nw:
                    raise IndexError
                chunk = w[i:e]
                it = iter(chunk)
                add(proto(tid, name, su, tuple(map(param, zip(it, it, strict=True)))))
                ref(su)
                more_refs(chunk[1::2])
                i = e
            elif kind == 2:  # PTR
                add(ptr(tid, name, su))
                ref(su)
            elif kind == 4 or kind == 5:  # STRUCT, UNION
                e = i + 3 * (info & 0xFFFF)
                if e > nw:
                    raise IndexError
                chunk = w[i:e]
                mtypes = chunk[1::3]
                offsets = chunk[2::3]
                if info >> 31:  # kind_flag: the offset packs bitfield_size << 24 | bit_offset
                    members = tuple(map(member, map(name_of, chunk[0::3]), mtypes,
                                        map(and_, offsets, repeat(0xFFFFFF)),
                                        map(rshift, offsets, repeat(24))))
                else:
                    members = tuple(map(member, map(name_of, chunk[0::3]), mtypes, offsets,
                                        repeat(0)))
                add((struct if kind == 4 else union)(tid, name, su, members))
                more_refs(mtypes)
                i = e
            elif kind == 10 or kind == 9 or kind == 11 or kind == 18:  # qualifiers, TYPE_TAG
                add(qualifier(tid, name, su, qualifiers[kind]))
                ref(su)
                chain[tid] = su
            elif kind == 8:  # TYPEDEF
                add(typedef(tid, name, su))
                ref(su)
                chain[tid] = su
            elif kind == 3:  # ARRAY
                elem, index, nelems = w[i], w[i + 1], w[i + 2]
                i += 3
                add(array(tid, name, elem, index, nelems))
                ref(elem)
                ref(index)
                chain[tid] = elem
            elif kind == 6:  # ENUM
                e = i + 2 * (info & 0xFFFF)
                if e > nw:
                    raise IndexError
                signed = bool(info >> 31)
                chunk = w[i:e]
                values = tuple(map(value, map(name_of, chunk[0::2]),
                                   map(_s32, chunk[1::2]) if signed else chunk[1::2]))
                add(enum(tid, name, su, signed, values, Kind.ENUM))
                i = e
            elif kind == 19:  # ENUM64
                e = i + 3 * (info & 0xFFFF)
                if e > nw:
                    raise IndexError
                signed = bool(info >> 31)
                chunk = w[i:e]
                wide = map(or_, map(lshift, chunk[2::3], repeat(32)), chunk[1::3])
                values = tuple(map(value, map(name_of, chunk[0::3]),
                                   map(_s64, wide) if signed else wide))
                add(enum(tid, name, su, signed, values, Kind.ENUM64))
                i = e
            elif kind == 14:  # VAR
                link = w[i]
                i += 1
                if link > 2:
                    raise BTFError(_at(tid, type_start + 4 * at, f"VAR linkage {link} unknown"))
                add(var(tid, name, su, linkage[link]))
                ref(su)
            elif kind == 1:  # INT
                v = w[i]
                i += 1
                add(int_(tid, name, su, encodings[v >> 24 & 0x0F], v >> 16 & 0xFF, v & 0xFF))
            elif kind == 7:  # FWD
                add(fwd(tid, name, bool(info >> 31)))
            elif kind == 15:  # DATASEC
                e = i + 3 * (info & 0xFFFF)
                if e > nw:
                    raise IndexError
                vtypes = w[i:e:3]
                add(datasec(tid, name, su, tuple(map(
                    secinfo, vtypes, w[i + 1 : e : 3], w[i + 2 : e : 3]
                ))))
                more_refs(vtypes)
                i = e
            elif kind == 16:  # FLOAT
                add(float_(tid, name, su))
            elif kind == 17:  # DECL_TAG
                idx = _s32(w[i])
                i += 1
                add(decl_tag(tid, name, su, idx))
                ref(su)
            else:
                raise BTFError(_at(tid, type_start + 4 * at, f"unknown kind {kind}"))
            tid += 1
    except IndexError:
        raise BTFError(
            _at(tid, type_start + 4 * at,
                f"truncated: {_kind_name(kind)} record runs past the end of the type section "
                f"at offset {type_start + hdr.type_len}"),
            where=where,
        ) from None
    except _BadName as e:
        raise BTFError(
            _at(tid, type_start + 4 * at,
                f"name offset {e.name_off} is outside the {hdr.str_len}-byte string table"),
            where=where,
        ) from None
    except BTFError as e:
        raise BTFError(e.message, where=where) from None

    if hdr.type_len % 4:
        raise BTFError(
            f"offset {type_start + nw * 4}: {hdr.type_len % 4} trailing bytes after the last "
            "type record",
            where=where,
        )
    if refs and max(refs) >= len(types):
        _check_refs(types, w, type_start, where)
    _check_cycles(chain, types, w, type_start, where)
    return Spec(tuple(types), hdr.byteorder)


def _at(tid: int, offset: int, what: str) -> str:
    return f"type id {tid} at offset {offset}: {what}"


def _kind_name(kind: int) -> str:
    return Kind(kind).name if 0 < kind <= wire.MAX_KIND else f"kind {kind}"
