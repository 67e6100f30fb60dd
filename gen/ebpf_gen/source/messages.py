"""The warnings of source analysis: one line each, saying what happened, why, and the fix."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..model import Diagnostic, MapDef
from ._clang import Loc, Node
from .infer import Record, Send


def _uses(sends: Sequence[Send]) -> Iterator[str]:
    for s in sends:
        yield f"{s.helper}() at {s.loc}"


def not_in_btf(rec: Record, uses: list[tuple[str, str]]) -> Diagnostic:
    helpers = " and ".join(dict.fromkeys(f"{h}() on map '{m}'" for h, m in uses))
    ident = rec.short.replace(" ", "_")
    loc = rec.decl.loc
    return Diagnostic(
        loc.file, loc.line, loc.column, "warning",
        f"{rec.display} is not in BTF: clang emits only types that a map, global variable or "
        f"function signature uses, and it reaches user space only through {helpers}; its "
        "layout was taken from the source. To put it in BTF in a way libbpf loads, add an "
        f"unused global: `{rec.display} *unused_{ident} __attribute__((unused));` (a "
        "__type(value, ...) annotation on a perf event array or ring buffer does not load "
        f"with libbpf), or pass --type {rec.short} to silence this warning.",
    )


def ambiguous(m: MapDef, loc: Loc, typed: dict[Node, list[Send]]) -> Diagnostic:
    kinds = []
    for sends in typed.values():
        rec = sends[0].record
        assert rec is not None
        kinds.append(f"{rec.display} ({', '.join(_uses(sends))})")
    return Diagnostic(
        loc.file, loc.line, loc.column, "warning",
        f"map '{m.name}' ({m.map_type_name}) is sent different types: {' and '.join(kinds)}; "
        "its events are read as bytes (send one type per map to type them)",
    )


def untyped(m: MapDef, loc: Loc, sends: Sequence[Send]) -> Diagnostic:
    if not sends:
        return Diagnostic(
            loc.file, loc.line, loc.column, "warning",
            f"cannot infer the event type of map '{m.name}' ({m.map_type_name}): no "
            "bpf_perf_event_output(), bpf_ringbuf_output() or bpf_ringbuf_reserve() in this "
            "source uses it; its events are read as bytes",
        )
    first = sends[0]
    where = "; ".join(f"{s.helper}() at {s.loc} gets '{s.what}'" for s in sends)
    return Diagnostic(
        first.loc.file, first.loc.line, first.loc.column, "warning",
        f"cannot infer the event type of map '{m.name}' ({m.map_type_name}): {where}; its "
        "events are read as bytes (pass a pointer to the struct, e.g. `&data` or a "
        "`struct event *`, to type them)",
    )
