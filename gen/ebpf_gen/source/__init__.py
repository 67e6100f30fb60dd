"""C source analysis with libclang: what a perf/ring buffer carries, and structs BTF lacks.

clang puts a type in BTF only when a map, global variable or function signature uses it. A
struct that is only ever a local handed to ``bpf_perf_event_output()`` (the classic
``struct data_t``) never reaches BTF, so the object alone cannot type its events (cilium/ebpf
issue 1747). This package parses the same source with the same flags, follows the output
helpers to the maps they feed, and lays out the missing structs from clang's own record
layout, appending them to the model's BTF so the formatter cannot tell them apart.

The steps, one module each: ``_clang`` parses (the only place clang.cindex's ``Any`` lives),
``infer`` finds what each event map is sent, ``layout`` turns clang records into BTF types,
``messages`` words the warnings; ``analyze`` and ``synthesize`` below tie them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ..btf.types import Enum, EnumValue, Kind, Spec
from ..errors import ConfigError, SourceError
from ..model import EVENT_MAP_TYPES, Diagnostic, MapDef, ObjectModel
from . import messages
from ._clang import Loc, Node, TranslationUnit, parse
from .infer import Inference, Record, Send
from .layout import _SIGNED_INT_KINDS, Builder

__all__ = ["analyze", "declare_event_types", "parse", "synthesize"]


def declare_event_types(model: ObjectModel, map_types: Mapping[str, str],
                        where: str) -> ObjectModel:
    """The event maps the user typed (``--map-type events='struct event'``) whose type is in
    BTF, typed so; the others are left for ``analyze`` (or, without a source, an error)."""
    if not map_types:
        return model
    by_name = {m.name: m for m in model.maps}
    maps = list(model.maps)
    for name, ctype in map_types.items():
        m = by_name.get(name)
        if m is None:
            known = ", ".join(sorted(by_name)) or "none"
            raise ConfigError(f"--map-type {name}={ctype}: no map named '{name}' "
                              f"(maps: {known})", where=where)
        if m.map_type_name not in EVENT_MAP_TYPES:
            raise ConfigError(f"--map-type {name}={ctype}: map '{name}' is a {m.map_type_name}, "
                              "whose key and value types come from BTF; --map-type types the "
                              "events of a perf event array or ring buffer", where=where)
        found = model.btf.named(_bare(ctype), *_BTF_KINDS[_prefix(ctype)])
        if found:
            maps[maps.index(m)] = replace(m, event_type=found[0].id)
    return replace(model, maps=tuple(maps))


def _undeclared(model: ObjectModel, map_types: Mapping[str, str]) -> dict[str, str]:
    """Declared map types BTF lacked: to be found in the source."""
    typed = {m.name for m in model.maps if m.event_type is not None}
    return {n: t for n, t in map_types.items() if n not in typed}


def needs_parse(model: ObjectModel, types: Sequence[str],
                map_types: Mapping[str, str] | None = None) -> bool:
    """Whether analyze() will parse the source: the parse costs as much as a compile
    (vmlinux.h), so it is skipped when idle and started early (beside the other compiles)
    when not."""
    try:
        model = declare_event_types(model, map_types or {}, "")
    except (ConfigError, SourceError):
        return True  # analyze() says so, naming the source
    return bool(_sign_unknown_enums(model.btf) or _undeclared(model, map_types or {})
                or _needs_source(model, types))


def analyze(source: Path, cflags: Sequence[str], model: ObjectModel,
            types: Sequence[str], *, cc: str = "clang",
            map_types: Mapping[str, str] | None = None,
            unit: object = None) -> ObjectModel:
    """Type the model's event maps from ``source`` and add the structs BTF lacks.

    ``map_types`` (map name -> C type) declares a map's event type instead of inferring it.
    ``unit``: parse()'s result for the model's byte order and these flags, made in
    parallel with the compiles (None: parse here).
    """
    model = declare_event_types(model, map_types or {}, str(source))
    missing = _undeclared(model, map_types or {})
    suspects = _sign_unknown_enums(model.btf)
    if not suspects and not missing and not _needs_source(model, types):
        return model  # the parse costs as much as a compile (vmlinux.h): skip it when idle
    if not isinstance(unit, TranslationUnit):
        unit = parse(source, cflags, byteorder=model.btf.byteorder, cc=cc)
    inf = Inference(unit)
    if suspects:
        model = replace(model, btf=_signed_from_source(model.btf, suspects, inf, str(source)))
    builder = Builder(model.btf, signed_enums=True)
    declared: dict[str, int] = {}
    for name, ctype in missing.items():
        decl = _find_decl(inf, ctype)
        if decl is None or decl.kind == "ENUM_DECL":
            raise ConfigError(f"--map-type {name}={ctype}: no struct, union or typedef "
                              f"'{_bare(ctype)}' in the object's BTF or defined in the source",
                              where=str(source))
        if decl.kind == "TYPEDEF_DECL":
            declared[name] = builder.type_id(decl.type, str(decl.loc))
        else:
            declared[name] = builder.record(decl, force=False)
    diags: list[Diagnostic] = []
    wanted = {_bare(t) for t in types}
    # records laid out from source, and the (helper, map) pairs that send each: the warning
    synthesised: dict[Node, tuple[Record, list[tuple[str, str]]]] = {}

    maps: list[MapDef] = []
    for m in model.maps:
        if m.name in declared:
            maps.append(replace(m, event_type=declared[m.name]))
            continue
        if m.map_type_name not in EVENT_MAP_TYPES or m.event_type is not None:
            maps.append(m)
            continue
        sends = [s for s in inf.sends if m.name in inf.maps_of(s.map)]
        # keyed by declaration, not location: a macro can define two records on one line
        typed: dict[Node, list[Send]] = {}
        for s in sends:
            if s.record is not None:
                typed.setdefault(s.record.decl, []).append(s)
        map_loc = inf.map_decls.get(m.name, Loc(str(source), 0, 0))
        if len(typed) > 1:
            diags.append(messages.ambiguous(m, map_loc, typed))
            maps.append(m)
            continue
        if not typed:
            diags.append(messages.untyped(m, map_loc, sends))
            maps.append(m)
            continue
        first = next(iter(typed.values()))
        rec = first[0].record
        assert rec is not None
        tid = builder.for_record(rec)
        # a fresh id, whether laid out now or earlier (for another map, or as a member)
        if tid >= len(model.btf) and rec.short not in wanted and rec.display not in wanted:
            _, uses = synthesised.setdefault(rec.decl, (rec, []))
            uses.extend((s.helper, m.name) for s in first)
        maps.append(replace(m, event_type=tid))

    for name in types:
        decl = _find_decl(inf, name)
        if decl is None:
            continue  # not in the source: the pipeline reports names found nowhere
        if decl.kind in ("TYPEDEF_DECL", "ENUM_DECL"):
            builder.type_id(decl.type, str(decl.loc))
        else:
            builder.record(decl, force=False)

    for rec, uses in synthesised.values():
        diags.append(messages.not_in_btf(rec, uses))
    diags.sort(key=lambda d: (d.file, d.line, d.column))

    if not builder.new:
        return replace(model, maps=tuple(maps),
                       diagnostics=(*model.diagnostics, *diags))
    return replace(
        model, btf=builder.spec(), maps=tuple(maps),
        source_types={**model.source_types, **builder.where_of},
        diagnostics=(*model.diagnostics, *diags),
    )


# -- enums clang 14 records incompletely --------------------------------------------------
# clang >= 15 marks an enum whose integer type is signed (it has a negative value) with BTF's
# kind_flag and writes its values signed, and writes an enum with 64-bit values as ENUM64.
# clang 14 writes every enum as an unsigned ENUM of 32-bit values: `MODE_OFF = -1` reads back
# as 4294967295 (and a bitfield of that enum as unsigned), `BIG_B = 1ULL << 40` as 0. Only an
# unsigned enum with a value whose top bit is set, or an 8-byte ENUM, can be such a one; for
# those the source's enum gives signedness and values, so both toolchains give the same module
# for the same C. (Enums laid out from source are always signed as the source says.)


def _sign_unknown_enums(btf: Spec) -> list[Enum]:
    return [t for t in btf.types if isinstance(t, Enum) and not t.signed and (
        (t.kind == Kind.ENUM and t.size > 4) or any(v.value >> (t.size * 8 - 1) for v in t.values))]


def _signed_from_source(btf: Spec, suspects: Sequence[Enum], inf: Inference,
                        main_file: str) -> Spec:
    """``btf`` with each of ``suspects`` given the signedness and values of its source."""
    source: dict[tuple[str, tuple[str, ...]], tuple[bool, tuple[int, ...]]] = {}
    for decl in _enum_decls(inf.decls, suspects, main_file):
        consts = [c for c in decl.children() if c.kind == "ENUM_CONSTANT_DECL"]
        signed = decl.enum_int_type.canonical().kind in _SIGNED_INT_KINDS
        source[_enum_key(decl)] = (signed, tuple(c.enum_value for c in consts))
    types = list(btf.types)
    for t in suspects:
        # anonymous enums are matched by their constants (enumerator names are unique in C)
        found = source.get((t.name, tuple(v.name for v in t.values)))
        if found is None:
            continue  # not defined in this source (a header's enum): BTF's word stands
        signed, values = found
        mask = (1 << (t.size * 8)) - 1
        types[t.id] = t._replace(signed=signed, values=tuple(
            EnumValue(v.name, x if signed else x & mask) for v, x in zip(t.values, values,
                                                                         strict=True)))
    return replace(btf, types=tuple(types))


def _enum_key(decl: Node) -> tuple[str, tuple[str, ...]]:
    """An enum's tag and constant names: what a BTF enum is matched with."""
    return decl.tag, tuple(c.spelling for c in decl.children() if c.kind == "ENUM_CONSTANT_DECL")


def _enum_decls(decls: Sequence[Node], suspects: Sequence[Enum], main_file: str) -> list[Node]:
    """The enum definitions that may be ``suspects``: by tag, or for anonymous ones every
    anonymous enum; at file scope, and inside the main file's records (C gives both file
    scope). vmlinux.h has ~15k declarations: only candidates are looked into."""
    tags = {t.name for t in suspects}
    # A named enum's spelling is its tag: one libclang call rules out the ~2k enums of
    # vmlinux.h that are not suspects, where the tag takes three. (An anonymous one's
    # spelling may be anything: with an anonymous suspect every enum is asked its tag.)
    spelled = tags if "" not in tags else None
    out: list[Node] = []
    records: list[Node] = []
    for d in decls:
        kind = d.kind
        if kind == "ENUM_DECL":
            if (spelled is None or d.spelling in spelled) and d.tag in tags and d.is_definition:
                out.append(d)
        elif kind in ("STRUCT_DECL", "UNION_DECL"):
            records.append(d)  # looked into only if file scope lacks a suspect
    wanted = {(t.name, tuple(v.name for v in t.values)) for t in suspects}
    if not wanted <= {_enum_key(d) for d in out}:
        todo = [r for r in records if r.is_definition and r.loc.file == main_file]
        while todo:
            r = todo.pop()
            for c in r.children():
                if c.kind == "ENUM_DECL" and c.tag in tags and c.is_definition:
                    out.append(c)
                elif c.kind in ("STRUCT_DECL", "UNION_DECL"):
                    todo.append(c)
    return out


def _needs_source(model: ObjectModel, types: Sequence[str]) -> bool:
    if any(m.map_type_name in EVENT_MAP_TYPES and m.event_type is None for m in model.maps):
        return True
    return any(not model.btf.named(_bare(name), *_BTF_KINDS[_prefix(name)]) for name in types)


def synthesize(
    source: Path, cflags: Sequence[str], btf: Spec, name: str, *, cc: str = "clang"
) -> tuple[Spec, int]:
    """Lay out the struct/union/typedef ``name`` from the source even when BTF has it.

    Returns the extended spec and the new type's id; members reuse BTF types by name. This
    is the check that source layout and clang's BTF agree.
    """
    unit = parse(source, cflags, byteorder=btf.byteorder, cc=cc)
    inf = Inference(unit)
    decl = _find_decl(inf, name)
    if decl is None:
        raise SourceError(f"no struct, union or typedef '{name}' defined", where=str(source))
    builder = Builder(btf, signed_enums=True)
    if decl.kind in ("STRUCT_DECL", "UNION_DECL"):
        tid = builder.record(decl, force=True)
    else:
        tid = builder.type_id(decl.type, str(decl.loc))
    return builder.spec(), tid


# What a --type name asks for, by its prefix ("" for a bare name: anything named so)
_BTF_KINDS = {
    "struct ": (Kind.STRUCT,),
    "union ": (Kind.UNION,),
    "enum ": (Kind.ENUM, Kind.ENUM64),
    "": (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.TYPEDEF),
}
_DECL_KINDS = {"struct ": "STRUCT_DECL", "union ": "UNION_DECL", "enum ": "ENUM_DECL"}


def _prefix(name: str) -> str:
    return next((p for p in _DECL_KINDS if name.startswith(p)), "")


def _bare(name: str) -> str:
    return name[len(_prefix(name)):]


def _find_decl(inf: Inference, name: str) -> Node | None:
    kind = _DECL_KINDS.get(_prefix(name))
    bare = _bare(name)
    candidates = [
        d for d in inf.decls
        if d.spelling == bare and (d.kind == "TYPEDEF_DECL" or d.is_definition)
        and not d.in_system_header
    ]
    for c in candidates:
        if kind is not None:
            if c.kind == kind and c.tag:
                return c
        elif c.kind == "TYPEDEF_DECL":
            return c
    if kind is None:  # a bare name: a tag will do when no typedef has it
        for c in candidates:
            if c.tag:
                return c
    return None


