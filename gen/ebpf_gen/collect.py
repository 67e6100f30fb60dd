"""Which types a module defines, what they are called, and in which order.

Roots: map key/value/event types, global variable types, ``--type`` names, and with
``all_types`` every named struct/union/enum. Each root pulls in the types it holds by value
(members, array elements, typedef targets; never pointees: pointers become ``c_uint64``).

Order (documented, stable): a type comes after every type it holds by value; among the types
ready at a step, the one whose Python class name sorts first comes next. Class names are
assigned before ordering (see ``_assign_names``), so the order depends only on the BTF.
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import naming
from .btf.types import Array, Enum, Int, Kind, Spec, Struct, Typedef, Union_, c_keyword
from .errors import MAX_NESTING, GenError
from .model import ObjectModel

_RECORD_KINDS = (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64)
_KIND_WORDS = {
    "struct": (Kind.STRUCT,),
    "union": (Kind.UNION,),
    "enum": (Kind.ENUM, Kind.ENUM64),  # clang 15+ writes 64-bit enums as ENUM64
}


@dataclass(frozen=True)
class Collected:
    order: tuple[int, ...]  # struct/union/enum type ids, in emission order
    names: dict[int, str]  # class name of each of them
    c_names: dict[int, str]  # "struct foo" / "foo_t" (typedef'd anonymous) / "" (anonymous)
    docs: dict[int, str]  # the first docstring line of each class (unescaped)
    typedefs: tuple[tuple[str, int], ...]  # (typedef name, typedef id) for C_TYPES, by name


@dataclass(frozen=True)
class _Origin:
    """Where an anonymous type was found: inside ``parent`` (member ``member``, or the
    ``index``-th unnamed member), or at a root called ``hint``."""

    parent: int | None
    member: str | None
    index: int
    position: int
    hint: str = ""


def find_types(spec: Spec, requested: Iterable[str]) -> list[int]:
    """Type ids for ``--type`` names: ``data_t``, ``struct data_t``, ``enum e``."""
    out: list[int] = []
    for text in requested:
        word, _, rest = text.strip().partition(" ")
        kinds: tuple[Kind, ...]
        if word in _KIND_WORDS and rest.strip():
            name, kinds = rest.strip(), _KIND_WORDS[word]
        else:
            name, kinds = text.strip(), (*_RECORD_KINDS, Kind.TYPEDEF)
        found = [t.id for t in spec.types if t.name == name and t.kind in kinds]
        if not found:
            known = sorted({t.name for t in spec.types if t.name and t.kind in kinds})
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise GenError(
                f"--type {text}: no struct, union, enum or typedef of that name in BTF{hint}"
            )
        out.extend(found)
    return out


def collect(
    model: ObjectModel, *, types: Sequence[str] = (), all_types: bool = False
) -> Collected:
    spec = model.btf
    walker = _Walker(spec)
    for outer in model.maps:
        # A map of maps' inner template is typed too: its handles are typed like it.
        for m, label in ((outer, outer.name), (outer.inner, f"{outer.name}_inner")):
            if m is None:
                continue
            for role, tid in (("key", m.key_type), ("value", m.value_type),
                              ("event", m.event_type)):
                if tid is not None:
                    walker.root(tid, f"{label}_{role}")
    for v in model.variables:
        walker.root(v.type, v.name)
    for tid in find_types(spec, types):
        walker.root(tid, spec[tid].name)
    if all_types:
        for t in spec.types:
            named = bool(t.name) and t.kind in _RECORD_KINDS
            if named or (isinstance(t, Typedef) and spec.resolve(t.id).kind in _RECORD_KINDS):
                walker.root(t.id, t.name)
    names, c_names = _assign_names(spec, walker)
    docs = {tid: _doc(spec, tid, walker, names, model.source_types) for tid in walker.found}
    order = _order(walker, names)
    typedefs = tuple(sorted((spec[tid].name, tid) for tid in walker.typedefs))
    return Collected(order, names, c_names, docs, typedefs)


class _Walker:
    """Finds the types roots hold by value. Recursive over struct/union members, but
    bounded: a type reached again while its own members are being walked contains itself
    by value (an error, as in C), and nesting deeper than ``MAX_NESTING`` levels of
    structs, unions and arrays is refused before any later walk could exhaust Python's
    stack or the module's expressions its parser."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.found: dict[int, _Origin | None] = {}  # None: a named type
        self.deps: dict[int, set[int]] = {}
        self.typedefs: set[int] = set()
        self.typedef_names: dict[int, str] = {}  # anonymous type -> the typedef naming it
        self._depth: dict[int, int] = {}  # levels below each struct/union/enum walked
        self._active: list[int] = []  # the structs/unions whose members are being walked

    def root(self, type_id: int, hint: str) -> None:
        self._visit(type_id, _Origin(None, None, 0, 0, hint), 0)

    def _visit(self, type_id: int, origin: _Origin, level: int) -> tuple[int | None, int]:
        """Record the struct/union/enum behind ``type_id``; return its id (None for
        scalars and pointers) and how many levels it nests, counted from ``type_id``."""
        t = self.spec[type_id]
        arrays = 0
        seen = 0
        while True:
            seen += 1
            if seen > 256:
                raise GenError("typedef/array chain too long", where=f"type id {type_id}")
            if isinstance(t, Typedef):
                self.typedefs.add(t.id)
                target = self.spec.resolve(t.id)
                if target.kind in _RECORD_KINDS and not target.name:
                    prev = self.typedef_names.get(target.id)
                    if prev is None or t.name < prev:
                        self.typedef_names[target.id] = t.name
                t = self.spec[t.type]
            elif isinstance(t, Array):
                arrays += 1
                t = self.spec[t.type]
            elif t.kind in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
                t = self.spec[t.type]  # type: ignore[union-attr]
            else:
                break
        if not isinstance(t, (Struct, Union_, Enum)):
            return None, arrays
        if t.id in self._active:
            cycle = [*self._active[self._active.index(t.id) :], t.id]
            raise GenError(
                "contains itself by value: "
                + " -> ".join(_describe_id(self.spec, tid) for tid in cycle),
                where=f"type id {t.id}",
            )
        if t.id in self.found:
            depth = arrays + self._depth.get(t.id, 1)
            self._check_depth(t.id, level + depth)
            return t.id, depth
        self.found[t.id] = None if t.name else origin
        deps = self.deps.setdefault(t.id, set())
        below = 0
        if isinstance(t, (Struct, Union_)):
            self._check_depth(t.id, level + arrays + 1)
            self._active.append(t.id)
            unnamed = 0
            _check_members(self.spec, t)
            for pos, m in enumerate(t.members):
                if not m.name and not isinstance(self.spec.resolve(m.type), (Struct, Union_)):
                    # C has no unnamed members but anonymous structs/unions (clang leaves
                    # unnamed bitfields out of BTF): nothing could name this one in Python.
                    raise GenError(
                        f"member #{pos} of {_describe_id(self.spec, t.id)} has no name and "
                        f"is of kind {self.spec.resolve(m.type).kind.name}, not a struct or union",
                        where=f"type id {t.id}",
                    )
                child = _Origin(t.id, m.name or None, unnamed, pos)
                dep, depth = self._visit(m.type, child, level + arrays + 1)
                below = max(below, depth)
                if not m.name and dep is not None:
                    unnamed += 1
                if dep is not None:
                    deps.add(dep)
            self._active.pop()
        self._depth[t.id] = below + 1
        return t.id, arrays + below + 1

    def _check_depth(self, type_id: int, level: int) -> None:
        if level > MAX_NESTING:
            raise GenError(
                f"{_describe_id(self.spec, type_id)} is nested more than {MAX_NESTING} levels "
                "deep (structs, unions and arrays inside each other)",
                where=f"type id {type_id}",
            )


def _check_members(spec: Spec, t: Struct | Union_) -> None:
    """What the kernel's btf_struct_check_members and btf_int_check_kflag_member refuse,
    and a layout would otherwise turn into a module that fails at import: struct members
    out of offset order, bitfields of a type that is not an integer or enum, members past
    the end of their struct."""
    last = 0
    for pos, m in enumerate(t.members):
        where = f"member #{pos} ({m.name or 'unnamed'}) of {_describe_id(spec, t.id)}"
        if isinstance(t, Struct):
            if m.bit_offset < last:
                raise GenError(f"{where}: bit offset {m.bit_offset} is before the previous "
                               f"member's ({last})", where=f"type id {t.id}")
            last = m.bit_offset
        if m.bitfield_size:
            base = spec.resolve(m.type)
            if not isinstance(base, (Int, Enum)):
                raise GenError(f"{where}: a {m.bitfield_size}-bit bitfield of kind "
                               f"{base.kind.name}, not an integer or enum",
                               where=f"type id {t.id}")
            if m.bitfield_size > 8 * base.size:
                raise GenError(f"{where}: a {m.bitfield_size}-bit bitfield of a "
                               f"{base.size}-byte type", where=f"type id {t.id}")
        if m.bit_offset + m.bitfield_size > 8 * t.size:
            raise GenError(f"{where}: bit offset {m.bit_offset} is past the end of its "
                           f"{t.size}-byte {t.kind.name.lower()}", where=f"type id {t.id}")


def _describe_id(spec: Spec, type_id: int) -> str:
    t = spec[type_id]
    word = c_keyword(t) or t.kind.name.lower()
    return f"{word} {t.name} (type id {type_id})" if t.name else (
        f"anonymous {word} (type id {type_id})"
    )


def _c_name(spec: Spec, tid: int, walker: _Walker) -> str:
    t = spec[tid]
    if t.name:
        return f"{c_keyword(t)} {t.name}"
    return walker.typedef_names.get(tid, "")


def _assign_names(spec: Spec, walker: _Walker) -> tuple[dict[int, str], dict[int, str]]:
    table = naming.NameTable(naming.RESERVED_MODULE_NAMES)
    names: dict[int, str] = {}
    c_names = {tid: _c_name(spec, tid, walker) for tid in walker.found}
    # Types with a name of their own (C tag, typedef, root hint) first, in a fixed order
    own: list[tuple[str, str, int, int]] = []
    pending: list[int] = []
    for tid, origin in walker.found.items():
        t = spec[tid]
        if t.name:
            own.append((naming.cap_words(t.name), t.name, int(t.kind), tid))
        elif tid in walker.typedef_names:
            tname = walker.typedef_names[tid]
            own.append((naming.cap_words(tname), tname, int(t.kind), tid))
        elif origin is not None and origin.parent is None:
            own.append((naming.cap_words(origin.hint), origin.hint, int(t.kind), tid))
        else:
            pending.append(tid)
    for base, _, _, tid in sorted(own):
        names[tid] = table.take(naming.escape(base, builtins_too=True))
    # Anonymous members take their parent's name, parents before children
    while pending:
        ready = []
        for tid in pending:
            origin = walker.found[tid]
            assert origin is not None and origin.parent is not None
            if origin.parent in names:
                ready.append((names[origin.parent], origin.position, tid))
        if not ready:
            raise GenError("anonymous types without a named parent", where="collect")
        for parent, _, tid in sorted(ready):
            origin = walker.found[tid]
            assert origin is not None
            names[tid] = table.take(naming.anonymous_class(parent, origin.member, origin.index))
        done = {tid for _, _, tid in ready}
        pending = [tid for tid in pending if tid not in done]
    return names, c_names


def _doc(
    spec: Spec, tid: int, walker: _Walker, names: dict[int, str], source: dict[int, str]
) -> str:
    t = spec[tid]
    word = c_keyword(t)
    if t.name:
        text = f"{word} {t.name}"
    elif tid in walker.typedef_names:
        text = f"typedef {walker.typedef_names[tid]}: anonymous {word}"
    else:
        origin = walker.found[tid]
        assert origin is not None
        if origin.parent is None:
            text = f"anonymous {word} of {origin.hint}"
        else:
            parent = spec[origin.parent]
            where = f"member {origin.member}" if origin.member else "unnamed member"
            pname = _c_name(spec, origin.parent, walker) or names[origin.parent]
            text = f"anonymous {word} in {pname or c_keyword(parent)}, {where}"
    if tid in source:
        text += f" (layout taken from {source[tid]}: not in BTF)"
    return text + "."


def _order(walker: _Walker, names: dict[int, str]) -> tuple[int, ...]:
    waiting = {tid: set(deps) - {tid} for tid, deps in walker.deps.items()}
    users: dict[int, list[int]] = {}
    for tid, deps in waiting.items():
        for d in deps:
            users.setdefault(d, []).append(tid)
    heap = [(names[tid], tid) for tid, deps in waiting.items() if not deps]
    heapq.heapify(heap)
    out: list[int] = []
    while heap:
        _, tid = heapq.heappop(heap)
        out.append(tid)
        for u in users.get(tid, ()):
            waiting[u].discard(tid)
            if not waiting[u]:
                heapq.heappush(heap, (names[u], u))
    if len(out) != len(waiting):
        stuck = sorted(names[t] for t in waiting if t not in out)
        raise GenError(f"types contain each other by value: {', '.join(stuck)}")
    return tuple(out)
