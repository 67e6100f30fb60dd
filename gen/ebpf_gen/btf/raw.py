"""``Spec`` -> the text of ``bpftool btf dump file X format raw`` (bpftool v7.1, btf.c
dump_btf_type). bpftool's raw dump is a stable text form of BTF, so tests compare ours with
it line by line: an oracle for the decoder."""

from __future__ import annotations

from .types import (
    Array,
    DataSec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Ptr,
    Qualifier,
    Spec,
    Struct,
    Type,
    Typedef,
    Union_,
    Var,
)

__all__ = ["dump_raw", "dump_type"]

_INT_ENCODING = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}
_LINKAGE = ("static", "global", "extern")


def _name(name: str) -> str:
    # bpftool prints "(anon)" for name offset 0; an empty string at another offset cannot
    # occur in a table without duplicate NULs, which libbpf's dedup never writes.
    return name or "(anon)"


def dump_type(spec: Spec, t: Type) -> str:
    """One type, possibly several lines (members indented by a tab), without the final newline."""
    head = f"[{t.id}] {t.kind.name} '{_name(t.name)}'"
    if isinstance(t, Int):
        enc = _INT_ENCODING.get(int(t.encoding), "UNKN")
        return f"{head} size={t.size} bits_offset={t.offset} nr_bits={t.bits} encoding={enc}"
    if isinstance(t, (Ptr, Typedef, Qualifier)):
        return f"{head} type_id={t.type}"
    if isinstance(t, Array):
        return f"{head} type_id={t.type} index_type_id={t.index_type} nr_elems={t.nelems}"
    if isinstance(t, (Struct, Union_)):
        lines = [f"{head} size={t.size} vlen={len(t.members)}"]
        for m in t.members:
            line = f"\t'{_name(m.name)}' type_id={m.type} bits_offset={m.bit_offset}"
            if m.bitfield_size:
                line += f" bitfield_size={m.bitfield_size}"
            lines.append(line)
        return "\n".join(lines)
    if isinstance(t, Enum):
        enc = "SIGNED" if t.signed else "UNSIGNED"
        lines = [f"{head} encoding={enc} size={t.size} vlen={len(t.values)}"]
        if t.kind == Kind.ENUM64:
            suffix = "LL" if t.signed else "ULL"
            lines += [f"\t'{_name(v.name)}' val={v.value}{suffix}" for v in t.values]
        else:
            lines += [f"\t'{_name(v.name)}' val={v.value}" for v in t.values]
        return "\n".join(lines)
    if isinstance(t, Fwd):
        return f"{head} fwd_kind={'union' if t.is_union else 'struct'}"
    if isinstance(t, Func):
        return f"{head} type_id={t.type} linkage={_LINKAGE[t.linkage]}"
    if isinstance(t, FuncProto):
        lines = [f"{head} ret_type_id={t.return_type} vlen={len(t.params)}"]
        lines += [f"\t'{_name(p.name)}' type_id={p.type}" for p in t.params]
        return "\n".join(lines)
    if isinstance(t, Var):
        return f"{head} type_id={t.type}, linkage={_LINKAGE[t.linkage]}"
    if isinstance(t, DataSec):
        lines = [f"{head} size={t.size} vlen={len(t.vars)}"]
        for v in t.vars:
            line = f"\ttype_id={v.type} offset={v.offset} size={v.size}"
            if v.type < len(spec):
                vt = spec[v.type]
                line += f" ({vt.kind.name} '{_name(vt.name)}')"
            lines.append(line)
        return "\n".join(lines)
    if isinstance(t, Float):
        return f"{head} size={t.size}"
    if isinstance(t, DeclTag):
        return f"{head} type_id={t.type} component_idx={t.component_idx}"
    return head


def dump_raw(spec: Spec) -> str:
    """All types but Void, in id order, each line ending in a newline, as bpftool prints them."""
    return "".join(dump_type(spec, t) + "\n" for t in spec.types[1:])
