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

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..btf.types import Kind, Spec
from ..errors import SourceError
from ..model import EVENT_MAP_TYPES, Diagnostic, MapDef, ObjectModel
from . import messages
from ._clang import Loc, Node, parse, system_clang
from .infer import Inference, Record, Send
from .layout import Builder

__all__ = ["analyze", "parse", "synthesize"]


def analyze(source: Path, cflags: Sequence[str], model: ObjectModel,
            types: Sequence[str], *, cc: str = "clang") -> ObjectModel:
    """Type the model's event maps from ``source`` and add the structs BTF lacks."""
    if not _needs_source(model, types):
        return model  # the parse costs as much as a compile (vmlinux.h): skip it when idle
    unit = parse(source, cflags, byteorder=model.btf.byteorder, cc=cc)
    inf = Inference(unit)
    builder = _builder(model.btf, cc)
    diags: list[Diagnostic] = []
    wanted = {_bare(t) for t in types}
    # records laid out from source, and the (helper, map) pairs that send each: the warning
    synthesised: dict[Node, tuple[Record, list[tuple[str, str]]]] = {}

    maps: list[MapDef] = []
    for m in model.maps:
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


def _builder(btf: Spec, cc: str) -> Builder:
    # clang >= 15 marks an enum with a negative value signed (BTF kind_flag); clang 14 writes
    # every value unsigned. The object's clang decides; unknown means a current one.
    major = system_clang(cc).major
    return Builder(btf, signed_enums=major == 0 or major >= 15)


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
    builder = _builder(btf, cc)
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


