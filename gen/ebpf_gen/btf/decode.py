"""Bytes of a .BTF section -> ``Spec``.

Speed matters (vmlinux has ~130k types; the bench compares us with bpftool), so: the type
section is read once into a list of u32 words (every BTF record is whole words); names come
from a dict built in C from the split string table; records are NamedTuples made in C by
``tuple.__new__`` (see types.py); struct/union members and function parameters, two thirds
of vmlinux's objects, are deferred (``Deferred``, loaded by ``_Trailers`` on first read) but
checked here, in bulk, after the loop; identical ``Param`` objects are shared (vmlinux
repeats four in five); and the garbage collector is paused while objects that are never
garbage are created. Errors are not checked per word: a record running past the section
surfaces as IndexError inside the loop and becomes a BTFError there, where the type id and
offset are still in hand.
"""
from __future__ import annotations

import gc
import sys
from array import array
from collections.abc import Iterator
from itertools import accumulate, chain, repeat
from operator import and_, lshift, or_, rshift
from typing import Any

from ..errors import BTFError
from . import wire
from .types import (
    Array,
    DataSec,
    DeclTag,
    Deferred,
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

__all__ = ["MAX_CHAIN", "decode_btf"]

# Longest pointer/typedef/qualifier/array chain accepted: real C stays in single digits;
# Spec.resolve gives up at 64 too.
MAX_CHAIN = 64
_ENUM_SIZES = frozenset((1, 2, 4, 8))

# tuple.__new__(Record, fields): the model's NamedTuples built in C, skipping their Python
# __new__ (see types.py).
_new = tuple.__new__
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
    """``chain`` maps each pointer/typedef/qualifier/array/var id to the id it stands on; a loop
    among them would make sizes undefined (and send Spec.resolve round forever), and a
    chain longer than ``MAX_CHAIN`` would make the walks over it (C spellings of
    pointers, nested ctypes arrays, the module's own expressions) recurse past Python's
    limits. Checked here, iteratively, so no walk needs to guard itself."""
    length: dict[int, int] = {}  # links below each id, once known; -1: on the current path
    for first in chain:
        if first in length:
            continue
        path = []
        tid = first
        while tid in chain and tid not in length:
            length[tid] = -1
            path.append(tid)
            tid = chain[tid]
        if length.get(tid) == -1:
            loop = [*path[path.index(tid) :], tid]
            raise BTFError(
                f"type id {tid} at offset {_record_offsets(w, start)[tid]}: "
                "pointer/typedef/qualifier/array/var cycle "
                + " -> ".join(f"{i} ({types[i].kind.name})" for i in loop),
                where=where,
            )
        below = length.get(tid, 0)
        for p in reversed(path):
            below += 1
            length[p] = below
        if below > MAX_CHAIN:
            top = path[0]
            raise BTFError(
                f"type id {top} at offset {_record_offsets(w, start)[top]}: a chain of "
                f"{below} pointers/typedefs/qualifiers/arrays/vars (more than {MAX_CHAIN})",
                where=where,
            )


class _Params(dict[int, Param]):
    """A FUNC_PROTO parameter's two words read as one u64 -> a shared Param.

    vmlinux's 83k parameters hold 21k distinct ones. Keying by the u64 (see
    ``_Trailers._make_pairs``) rather than by a (name_off, type) tuple spares a tuple per
    parameter and makes each lookup an int comparison.
    """

    __slots__ = ("_name_high", "_names")

    def __init__(self, names: _Names, name_high: bool) -> None:
        super().__init__()
        self._names = names
        self._name_high = name_high  # which half of the u64 holds name_off

    def __missing__(self, key: int) -> Param:
        hi, lo = key >> 32, key & 0xFFFFFFFF
        name_off, type_id = (hi, lo) if self._name_high else (lo, hi)
        p = self[key] = _new(Param, (self._names[name_off], type_id))
        return p


class _Trailers:
    """Loads deferred STRUCT/UNION members and FUNC_PROTO parameters (``Deferred``).

    A token is ``(self, kind, word index, vlen, kind_flag)``. The decoder has already
    checked every name offset and type id in them, so loading cannot fail. It keeps the
    type section as a compact array of host-order words (the caller's buffer may change
    after decode returns), and each loaded tuple, so every read gives the same one.
    """

    __slots__ = ("_cache", "_names", "_pairs", "_params", "_words")

    def __init__(self, words: array[int], names: _Names) -> None:
        self._words = words
        self._names = names
        # Host-order words: a u64 over two of them has the first word low on a
        # little-endian host.
        self._params = _Params(names, name_high=sys.byteorder == "big")
        self._pairs: tuple[array[int], array[int]] | None = None
        self._cache: dict[int, tuple[Any, ...]] = {}

    def __call__(self, token: Deferred) -> tuple[Any, ...]:
        _, kind, i, vlen, kind_flag = tuple.__iter__(token)  # its own __iter__ loads
        got = self._cache.get(i)
        if got is None:
            got = self._cache[i] = (self.params(i, vlen) if kind == 13
                                    else self.members(i, vlen, kind_flag))
        return got

    def members(self, i: int, vlen: int, kind_flag: int) -> tuple[Member, ...]:
        w = self._words[i : i + 3 * vlen]
        names = map(self._names.__getitem__, w[0::3])
        offsets = w[2::3]
        if kind_flag:  # the offset packs bitfield_size << 24 | bit_offset
            fields = zip(names, w[1::3], map(and_, offsets, repeat(0xFFFFFF)),
                         map(rshift, offsets, repeat(24)))
        else:
            fields = zip(names, w[1::3], offsets, repeat(0))
        return tuple(map(_new, repeat(Member), fields))

    def params(self, i: int, vlen: int) -> tuple[Param, ...]:
        """(name_off, type) pairs, each looked up as one u64."""
        pairs = self._pairs or self._make_pairs()
        h = i >> 1
        return tuple(map(self._params.__getitem__, pairs[i & 1][h : h + vlen]))

    def _make_pairs(self) -> tuple[array[int], array[int]]:
        """The words as u64s twice, from word 0 and from word 1: the two words at any word
        index i are element i >> 1 of ``pairs[i & 1]``."""
        raw = self._words.tobytes()
        views = []
        for first in (0, 4):
            q = array("Q")
            q.frombytes(raw[first : len(raw) - (len(raw) - first) % 8])
            views.append(q)
        self._pairs = views[0], views[1]
        return self._pairs


def _column(w: list[int], starts: list[int], ends: list[int], column: int,
            width: int) -> Iterator[int]:
    """Column ``column`` of every record's ``width``-word trailer entries, lazily, in C loops."""
    firsts = map(column.__add__, starts) if column else starts
    return chain.from_iterable(map(w.__getitem__, map(slice, firsts, ends, repeat(width))))


def _chains_deep_or_cyclic(chain: dict[int, int]) -> bool:
    """Whether ``_check_cycles`` would find something: a loop, or a chain of more than
    ``MAX_CHAIN`` links. Peels the chain from the bottom, one link per round over what
    is left, each round one C-driven comprehension: the ids one link above a non-chain
    type go in the first round (most of vmlinux's 25k), and after ``MAX_CHAIN`` rounds
    only ids in or above a loop, or too deep, remain. The exact walk that names the
    culprit runs only then."""
    left = chain
    for _ in range(MAX_CHAIN):
        if not left:
            return False
        left = {tid: below for tid, below in left.items() if below in left}
    return bool(left)


def _first_bad(w: list[int], starts: list[int], ends: list[int], column: int, width: int,
               limit: int) -> tuple[int, int]:
    """(trailer start, value) of the first trailer word in ``column`` that is >= limit."""
    for start, end in zip(starts, ends):
        for value in w[start + column : end : width]:
            if value >= limit:
                return start, value
    raise AssertionError("no bad word")  # pragma: no cover - only called after max() found one


def decode_btf(data: bytes, *, where: str = ".BTF", lazy: bool = True) -> Spec:
    """Decode a raw .BTF section (or /sys/kernel/btf/vmlinux) into a ``Spec``.

    Every record is read and checked either way. With ``lazy`` (the default), struct and
    union members and function parameters become objects when first read, as libbpf,
    cilium/ebpf and pyelftools defer what a reader may never need: they are two thirds of
    vmlinux's objects. ``lazy=False`` builds them all up front, inside the decoder's GC
    pause: for a caller that will read every one (~1.6x faster than reading them lazily
    with the collector running, which rescans the spec's records as they pile up);
    its records hold plain tuples.

    Sizes and offsets are kept exactly as written: clang leaves DATASEC sizes and variable
    offsets at 0 in a .o, and fixing them up from the ELF is the ELF reader's job.
    """
    gc_was_enabled = gc.isenabled()
    # Hundreds of thousands of new objects, none of them garbage: collections triggered
    # along the way only rescan them (a third of the time on vmlinux).
    gc.disable()
    try:
        return _decode(data, where, lazy)
    finally:
        if gc_was_enabled:
            gc.enable()


def _decode(data: bytes, where: str, lazy: bool) -> Spec:
    hdr = wire.read_header(data, where)
    base = hdr.hdr_len
    type_start = base + hdr.type_off
    names = _string_table(data, base + hdr.str_off, hdr.str_len, where)
    words = wire.u32_array(data, type_start, hdr.type_len, hdr.byteorder)
    w = words.tolist()
    nw = len(w)

    types: list[Type] = [Void()]
    add = types.append
    refs: list[int] = []
    ref = refs.append
    more_refs = refs.extend
    chain: dict[int, int] = {}
    trailers = _Trailers(words, names)
    load_members, load_params = trailers.members, trailers.params
    # Where each member/parameter list is, for the bulk checks after the loop.
    mstarts: list[int] = []
    mends: list[int] = []
    pstarts: list[int] = []
    pends: list[int] = []
    mstart, mend, pstart, pend = mstarts.append, mends.append, pstarts.append, pends.append
    linkage = _LINKAGE
    encodings = _INT_ENCODING
    qualifiers = _QUALIFIER_KINDS
    new = _new
    name_of = names.__getitem__
    # Enum values are built by map(): new(EnumValue, fields) for each zipped fields tuple.
    value = repeat(EnumValue)
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
                add(new(Func, (tid, name, su, linkage[vlen])))
                ref(su)
            elif kind == 13:  # FUNC_PROTO
                vlen = info & 0xFFFF
                e = i + 2 * vlen
                if e > nw:
                    raise IndexError
                params = (new(Deferred, (trailers, 13, i, vlen, 0)) if lazy
                          else load_params(i, vlen))
                add(new(FuncProto, (tid, name, su, params)))
                ref(su)
                pstart(i)
                pend(e)
                i = e
            elif kind == 2:  # PTR
                add(new(Ptr, (tid, name, su)))
                ref(su)
                chain[tid] = su
            elif kind == 4 or kind == 5:  # STRUCT, UNION
                vlen = info & 0xFFFF
                e = i + 3 * vlen
                if e > nw:
                    raise IndexError
                members = (new(Deferred, (trailers, kind, i, vlen, info >> 31)) if lazy
                           else load_members(i, vlen, info >> 31))
                rec = (tid, name, su, members)
                add(new(Struct, rec) if kind == 4 else new(Union_, rec))
                mstart(i)
                mend(e)
                i = e
            elif kind == 10 or kind == 9 or kind == 11 or kind == 18:  # qualifiers, TYPE_TAG
                add(new(Qualifier, (tid, name, su, qualifiers[kind])))
                ref(su)
                chain[tid] = su
            elif kind == 8:  # TYPEDEF
                add(new(Typedef, (tid, name, su)))
                ref(su)
                chain[tid] = su
            elif kind == 3:  # ARRAY
                elem, index, nelems = w[i], w[i + 1], w[i + 2]
                i += 3
                add(new(Array, (tid, name, elem, index, nelems)))
                ref(elem)
                ref(index)
                chain[tid] = elem
            elif kind == 6:  # ENUM
                e = i + 2 * (info & 0xFFFF)
                if e > nw:
                    raise IndexError
                if su not in _ENUM_SIZES:
                    raise BTFError(_at(tid, type_start + 4 * at, f"ENUM size {su}, expected "
                                       "1, 2, 4 or 8"))
                signed = bool(info >> 31)
                chunk = w[i:e]
                vals = chunk[1::2]
                values = tuple(map(new, value, zip(map(name_of, chunk[0::2]),
                                                   map(_s32, vals) if signed else vals)))
                add(new(Enum, (tid, name, su, signed, values, Kind.ENUM)))
                i = e
            elif kind == 19:  # ENUM64
                e = i + 3 * (info & 0xFFFF)
                if e > nw:
                    raise IndexError
                if su not in _ENUM_SIZES:
                    raise BTFError(_at(tid, type_start + 4 * at, f"ENUM64 size {su}, expected "
                                       "1, 2, 4 or 8"))
                signed = bool(info >> 31)
                chunk = w[i:e]
                wide = map(or_, map(lshift, chunk[2::3], repeat(32)), chunk[1::3])
                values = tuple(map(new, value, zip(map(name_of, chunk[0::3]),
                                                   map(_s64, wide) if signed else wide)))
                add(new(Enum, (tid, name, su, signed, values, Kind.ENUM64)))
                i = e
            elif kind == 14:  # VAR
                link = w[i]
                i += 1
                if link > 2:
                    raise BTFError(_at(tid, type_start + 4 * at, f"VAR linkage {link} unknown"))
                add(new(Var, (tid, name, su, linkage[link])))
                ref(su)
                chain[tid] = su  # a VAR of a VAR is no type, and Spec.sizeof follows it
            elif kind == 1:  # INT
                v = w[i]
                i += 1
                # The kernel's btf_int_check_meta: at most 16 bytes, bits within them
                if not 0 < su <= 16 or (v & 0xFF) + (v >> 16 & 0xFF) > 8 * su or v & 0xFF > 128:
                    raise BTFError(_at(tid, type_start + 4 * at, f"INT of size {su} with "
                                       f"{v & 0xFF} bits at bit offset {v >> 16 & 0xFF}"))
                add(new(Int, (tid, name, su, encodings[v >> 24 & 0x0F], v >> 16 & 0xFF, v & 0xFF)))
            elif kind == 7:  # FWD
                add(new(Fwd, (tid, name, bool(info >> 31))))
            elif kind == 15:  # DATASEC
                e = i + 3 * (info & 0xFFFF)
                if e > nw:
                    raise IndexError
                vtypes = w[i:e:3]
                add(new(DataSec, (tid, name, su, tuple(map(
                    new, repeat(VarSecInfo), zip(vtypes, w[i + 1 : e : 3], w[i + 2 : e : 3])
                )))))
                more_refs(vtypes)
                i = e
            elif kind == 16:  # FLOAT
                add(new(Float, (tid, name, su)))
            elif kind == 17:  # DECL_TAG
                idx = _s32(w[i])
                i += 1
                add(new(DeclTag, (tid, name, su, idx)))
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
    # The deferred trailers, checked here in bulk as the loop would have: every name
    # offset inside the string table, every type id (below, with the others) defined.
    # Each column is read straight from ``w`` by strided slices, one per record, and fed
    # to max() through chain: no list of all the trailer words is ever built (vmlinux has
    # ~100k records' worth).
    ref_max = max(refs, default=-1)
    for starts, ends, width in ((mstarts, mends, 3), (pstarts, pends, 2)):
        if max(_column(w, starts, ends, 0, width), default=-1) >= hdr.str_len:
            start, off = _first_bad(w, starts, ends, 0, width, hdr.str_len)
            raise BTFError(
                f"type id {_record_offsets(w, type_start).index(type_start + 4 * start - 12)} "
                f"at offset {type_start + 4 * start - 12}: name offset {off} is outside the "
                f"{hdr.str_len}-byte string table",
                where=where,
            )
        ref_max = max(ref_max, max(_column(w, starts, ends, 1, width), default=-1))
    if ref_max >= len(types):
        _check_refs(types, w, type_start, where)
    if _chains_deep_or_cyclic(chain):
        _check_cycles(chain, types, w, type_start, where)
    return Spec(tuple(types), hdr.byteorder)


def _at(tid: int, offset: int, what: str) -> str:
    return f"type id {tid} at offset {offset}: {what}"


def _kind_name(kind: int) -> str:
    return Kind(kind).name if 0 < kind <= wire.MAX_KIND else f"kind {kind}"
