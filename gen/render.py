"""ObjectModel -> the text of a generated module (templates/module.py.j2).

Everything the template prints arrives precomputed here: names from ``naming``, layouts from
``ctypes_fmt``, expressions laid out by ``pyfmt``. The template only loops and branches.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from . import naming
from .btf.types import Enum, Ptr
from .collect import Collected, collect
from .ctypes_fmt import ArrayOf, ClassRef, CRef, EnumDecl, Formatter, Record, Scalar
from .errors import GenError
from .model import MapDef, ObjectModel, VariableDef
from .pyfmt import Atom, Group, Node, text
from .runtime.spec import PLAIN_HANDLE, MapKind, handle_for


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ebpf_gen.templates", ""),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # the output is Python; every value is escaped by naming/pyfmt
    )


def render_module(context: Mapping[str, Any]) -> str:
    """The module text for ``module_context(...)``."""
    return environment().get_template("module.py.j2").render(**context)


@dataclass(frozen=True)
class _ClassBlock:
    """One struct/union/enum class, ready to print."""

    header: str
    doc: str
    body: tuple[str, ...]  # statements, each possibly several lines, indented by 4
    after: str  # the check_layout(...) call, "" for enums
    hints: tuple[str, ...] = ()  # the member annotations' types


def module_context(
    model: ObjectModel,
    *,
    stem: str,
    source: str | None,
    objects: Mapping[str, tuple[str, str]],
    types: Sequence[str] = (),
    all_types: bool = False,
) -> dict[str, Any]:
    model = dataclasses.replace(model, variables=_variables_shown(model))
    coll = collect(model, types=types, all_types=all_types)
    fmt = Formatter(model.btf, coll.names, c_names=coll.c_names, docs=coll.docs)
    used: set[str] = {"MapsBase", "ProgramsBase", "VariablesBase", "ObjectsBase", "ObjectSpec"}
    used |= {"ObjectFile", "OpenObject", "NO_SETTINGS"}
    classes: list[_ClassBlock] = []
    records = {tid: fmt.record(tid) for tid in coll.order if not isinstance(model.btf[tid], Enum)}
    embedded = _anonymous_members(records.values())
    for tid in coll.order:
        if tid in records:
            classes.append(_record_block(fmt, records[tid], used, embedded))
            used |= {"check_layout", "CUnion" if records[tid].is_union else "CStruct"}
        else:
            classes.append(_enum_block(fmt.enum(tid)))
            used.add("CEnum")
    refs: list[CRef] = []  # every type the maps, variables and C_TYPES spell
    c_types = _c_types(fmt, coll, refs)
    maps = _maps(fmt, model, used, refs)
    variables = _variables(fmt, model, used, refs)
    programs = _programs(model)
    if maps:
        used.add("map_spec")
    if programs:
        used |= {"Program", "program_spec"}
    obj = _object_spec(stem, objects)
    settings = _settings(fmt, model)
    return {
        "docstring": _module_doc(source or f"{stem}.bpf.o"),
        "uses_sequence": any("Sequence[" in h for c in classes for h in c.hints),
        # decided from what is emitted: a Structure/Union class or a ctypes scalar spelled
        "uses_ctypes": bool(records) or any(map(_spells_ctypes, refs)),
        "imports": _imports(used),
        "classes": classes,
        "c_types": c_types,
        "maps": maps,
        "programs": programs,
        "variables": variables,
        "object_spec": obj,
        "settings": settings,
        "uses_final": any(v.readonly for v in model.variables),
    }


def _variables_shown(model: ObjectModel) -> tuple[VariableDef, ...]:
    """The globals a module exposes: all but BTF anchors, the pointer globals named
    ``unused_*`` that exist only to put a struct into BTF (what the missing-struct warning
    recommends: ``struct event *unused_event __attribute__((unused));``)."""
    return tuple(
        v for v in model.variables
        if not (v.name.startswith("unused_") and isinstance(model.btf.resolve(v.type), Ptr))
    )  # fmt: skip


def _import_order(names: set[str]) -> tuple[Atom, ...]:
    # isort's order-by-type, as ruff checks it: CONSTANTS, then Classes, then functions
    def key(n: str) -> tuple[int, str]:
        kind = 0 if n.isupper() else 1 if n[0].isupper() else 2
        return kind, n.lower()

    return tuple(Atom(n) for n in sorted(names, key=key))


def _imports(used: set[str]) -> str:
    names = _import_order(used)
    line = "from ebpf_gen.runtime import " + ", ".join(a.text for a in names)
    if len(line) <= 100:
        return line
    return text(Group("from ebpf_gen.runtime import (", names, ")", call=False))


def _module_doc(built_from: str) -> str:
    # Only the inputs shape the text: no tool version, and no record of how the generator
    # was invoked (regenerating one file must give what `ebpf-gen generate` gives).
    return "\n".join(
        [
            f"Skeleton for the BPF object built from {naming.doc_text(built_from)}.",
            "",
            "Code generated by ebpf-gen. DO NOT EDIT: change the C source and regenerate",
            "(ebpf-gen generate, or ebpf-gen on the source file).",
        ]
    )


def expr(ref: CRef) -> str:
    if isinstance(ref, Scalar):
        return f"ctypes.{ref.ctype}"
    if isinstance(ref, ArrayOf):
        return f"{expr(ref.elem)} * {ref.length}"
    return ref.name


def _spells_ctypes(ref: CRef) -> bool:
    """Whether ``expr(ref)`` names something in ``ctypes``."""
    if isinstance(ref, ArrayOf):
        return _spells_ctypes(ref.elem)
    return isinstance(ref, Scalar)


def hint(ref: CRef | None) -> str:
    """The Python type a handle reads and writes for ``ref`` (see docs/generated-module.md)."""
    if ref is None:
        return "bytes"
    if isinstance(ref, Scalar):
        return ref.py
    if isinstance(ref, ClassRef):
        return ref.name
    if isinstance(ref.elem, Scalar) and ref.elem.ctype == "c_char":
        return "bytes"
    return f"ctypes.Array[{_array_elem(ref.elem)}]"


def _array_elem(ref: CRef) -> str:
    if isinstance(ref, ArrayOf):
        return f"ctypes.Array[{_array_elem(ref.elem)}]"
    return expr(ref)


def _comment(text: str) -> str:
    text = naming.doc_text(text)
    return text if len(text) <= 60 else text[:57] + "..."


def _anonymous_members(records: Iterable[Record]) -> set[int]:
    """Records embedded as anonymous members: ctypes copies their fields' descriptors into
    the parent and refuses any that is not its own, so enum accessors go on the parent."""
    out: set[int] = set()
    for rec in records:
        for f in rec.fields:
            if f.name in rec.anonymous and isinstance(f.ctype, ClassRef):
                out.add(f.ctype.type_id)
    return out


def field_hint(ref: CRef) -> str:
    """The Python type a struct field reads as (docs/generated-module.md)."""
    if isinstance(ref, Scalar):
        return ref.py
    if isinstance(ref, ClassRef):
        return ref.name
    if isinstance(ref.elem, Scalar) and ref.elem.ctype == "c_char":
        return "bytes"
    return f"Sequence[{field_hint(ref.elem)}]"


def _members(fmt: Formatter, rec: Record, enums: bool) -> list[tuple[str, str, str, bool]]:
    """(name, annotation, enum class to install, is a ctypes field) per C member, the
    members of anonymous structs/unions flattened into their parent as ctypes does."""
    fields = {f.name: f for f in rec.fields}
    out: list[tuple[str, str, str, bool]] = []
    for name in rec.members:
        f = fields.get(name)
        if f is None:  # a Bitfield descriptor
            out.append((name, "int", "", False))
        elif name in rec.anonymous:
            assert isinstance(f.ctype, ClassRef)
            # ctypes flattens the child's fields, not its Bitfield descriptors
            out += [m for m in _members(fmt, fmt.record(f.ctype.type_id), enums) if m[3]]
        elif f.enum and not f.bits and enums:
            out.append((name, f.enum, f.enum, True))
        elif f.bits:
            out.append((name, "int", "", True))
        else:
            out.append((name, field_hint(f.ctype), "", True))
    return out


def _record_block(fmt: Formatter, rec: Record, used: set[str], embedded: set[int]) -> _ClassBlock:
    members = _members(fmt, rec, enums=rec.type_id not in embedded)
    body: list[str] = [
        f"{name}: {ann}" + ("  # noqa: E741" if name in ("l", "O", "I") else "")  # C's names
        for name, ann, _, _ in members
    ]
    if rec.pack:
        body.append("_pack_ = 1")
    if rec.anonymous:
        body.append(text(Group("_anonymous_ = (", tuple(map(_lit, rec.anonymous)), ")", False),
                         indent=4))  # fmt: skip
    items: list[Node] = []
    for f in rec.fields:
        parts = [_lit(f.name), Atom(expr(f.ctype))]
        if f.bits:
            parts.append(Atom(str(f.bits)))
        items.append(Atom(flat_tuple(parts), comment=_comment(f.comment)) if f.comment
                     else Group("(", tuple(parts), ")", call=False))  # fmt: skip
    # a tuple: a list would be a mutable class attribute next to annotations (RUF012)
    body.append(text(Group("(", tuple(items), ")", call=False), indent=4, lead="_fields_ = "))
    bitfields: list[Node] = []
    for bf in rec.bitfields:
        used.add("Bitfield")
        args: tuple[Atom, ...] = (
            _lit(bf.storage),
            Atom(f"bit={bf.bit}"),
            Atom(f"bits={bf.bits}"),
            Atom(f"signed={bf.signed}"),
        )
        if fmt.spec.byteorder == "big":
            args = (*args, Atom('byteorder="big"'))  # bit numbering of a big-endian object
        bitfields.append(Group(f"{naming.py_str(bf.name)}: Bitfield(", args, ")", call=True))
    base = "CUnion" if rec.is_union else "CStruct"
    offsets = tuple(Atom(f"{naming.py_str(k)}: {v}") for k, v in rec.offsets.items())
    check_args: tuple[Node, ...] = (
        Atom(rec.name),
        Atom(f"size={rec.size}"),
        Group("offsets={", offsets, "}", call=False),
    )
    if bitfields:
        check_args += (Group("bitfields={", tuple(bitfields), "}", call=False),)
    enums = tuple(Atom(f"{naming.py_str(name)}: {cls}") for name, _, cls, _ in members if cls)
    if enums:
        check_args += (Group("enums={", enums, "}", call=False),)
    check = Group("check_layout(", check_args, ")", call=True)
    return _ClassBlock(
        header=f"class {rec.name}({base}):",
        doc=naming.doc_text(rec.doc),
        body=tuple(body),
        after=text(check),
        hints=tuple(ann for _, ann, _, _ in members),
    )


def flat_tuple(parts: list[Atom]) -> str:
    return "(" + ", ".join(p.text for p in parts) + ")"


def _lit(s: str) -> Atom:
    return Atom(naming.py_str(s))


def _enum_block(decl: EnumDecl) -> _ClassBlock:
    body = tuple(f"{name} = {value}" for name, value in decl.values) or ("pass",)
    return _ClassBlock(
        header=f"class {decl.name}(CEnum):",
        doc=naming.doc_text(decl.doc),
        body=body,
        after="",
    )


def _c_types(fmt: Formatter, coll: Collected, refs: list[CRef]) -> str:
    entries: list[tuple[str, str]] = []
    for tid in coll.order:
        c_name = coll.c_names.get(tid, "")
        if c_name and not c_name.startswith(("struct ", "union ", "enum ")):
            continue  # a typedef'd anonymous type: the typedef entry below names it
        if c_name:
            entries.append((c_name, coll.names[tid]))
    for name, tid in coll.typedefs:
        try:
            ref, _ = fmt.ref(tid)
        except GenError:
            continue  # typedefs of void or functions have no ctypes type
        target = fmt.spec.resolve(tid)
        if isinstance(target, Enum) and target.id in coll.names:
            entries.append((name, coll.names[target.id]))
        else:
            refs.append(ref)
            entries.append((name, expr(ref)))
    items = tuple(Atom(f"{naming.py_str(k)}: {v}") for k, v in sorted(entries))
    return text(Group("{", items, "}", call=False), lead="C_TYPES: dict[str, type] = ")


def _map_ref(fmt: Formatter, type_id: int | None, where: str) -> CRef | None:
    if type_id is None:
        return None
    try:
        return fmt.ref(type_id, where=where)[0]
    except GenError as e:
        raise e.within(where) from e


def _attributes(c_names: Iterable[str], what: str, plural: str) -> list[str]:
    """The Maps/Programs attribute of each C name (written into its spec as ``attr`` when it
    differs). Users find an attribute from the C name by the escaping rule alone, so two
    names escaping alike (``print`` and ``print_``) are an error, not a renumbering that
    would make ``print_`` mean another map than the one named so in C."""
    table = naming.NameTable()
    return [
        table.claim(
            naming.attribute_name(name),
            what=f"{what} {name}",
            hint=f"two {plural} escape to the same Python name; rename one in C",
        )
        for name in c_names
    ]


def _maps(fmt: Formatter, model: ObjectModel, used: set[str], refs: list[CRef]) -> list[str]:
    """One line per map: ``attr: Handle[...] = map_spec("name", key=..., value=...)``."""
    lines: list[str] = []
    attrs = _attributes((m.name for m in model.maps), "map", "maps")
    for m, attr in zip(model.maps, attrs, strict=True):
        ann, call = _map(fmt, m, used, refs)
        lines.append(text(call, indent=4, lead=f"{attr}: {ann} = "))
    return lines


def _map(
    fmt: Formatter, m: MapDef, used: set[str], refs: list[CRef]
) -> tuple[str, Group]:
    """The handle annotation and the ``map_spec(...)`` call of one map (an inner template's
    nested as ``inner=``). Kind, max_entries and flags are not written: libbpf reads them
    from the object and the runtime asks libbpf."""
    where = f"map {m.name}"
    handle = handle_for(_map_kind(m))
    used.add(handle.name)
    key = _map_ref(fmt, m.key_type, where)
    value = _map_ref(fmt, m.value_type, where)
    event = _map_ref(fmt, m.event_type, where)
    refs.extend(r for r in (key, value, event) if r is not None)
    inner: tuple[Node, ...] = ()
    params: list[str] = []
    for role in handle.params:
        if role == "key":
            # fd-valued maps without BTF key types are indexed by u32
            params.append(hint(key) if key or "inner" not in handle.params else "int")
        elif role == "value":
            params.append(hint(value))
        elif role == "event":
            params.append(hint(event))
        elif role == "inner":
            if m.inner is not None:
                inner_ann, inner_call = _map(fmt, m.inner, used, refs)
                inner = (Group("inner=" + inner_call.open, inner_call.items, ")", call=True),)
            else:
                inner_ann = PLAIN_HANDLE.name
                used.add(inner_ann)
            params.append(inner_ann)
        else:
            raise AssertionError(f"spec.HANDLES: unknown parameter role {role!r}")
    ann = f"{handle.name}[{', '.join(params)}]" if params else handle.name
    args: tuple[Node, ...] = (
        _lit(m.name),
        *(Atom(f"{role}={expr(ref)}") for role, ref in
          (("key", key), ("value", value), ("event", event)) if ref is not None),
        *inner,
    )  # fmt: skip
    return ann, Group("map_spec(", args, ")", call=True)


def _map_kind(m: MapDef) -> MapKind:
    try:
        return MapKind(m.map_type)
    except ValueError:
        raise GenError(f"map type {m.map_type} is not a BPF_MAP_TYPE_", where=m.name) from None


def _variables(
    fmt: Formatter, model: ObjectModel, used: set[str], refs: list[CRef]
) -> list[str]:
    """One line per global: ``attr = Variable[int](".bss", "name", ctypes.c_uint64, offset=0)``
    (the offset: the runtime reads and writes the section's memory at it)."""
    lines: list[str] = []
    table = naming.NameTable()
    for v in model.variables:
        where = f"variable {v.name} ({v.section})"
        ref = _map_ref(fmt, v.type, where)
        assert ref is not None
        refs.append(ref)
        attr = table.claim(
            naming.attribute_name(v.name),
            what=where,
            hint="two globals escape to the same Python name; rename one in C",
        )
        used.add("Variable")
        args = (_lit(v.section), _lit(v.name), Atom(expr(ref)), Atom(f"offset={v.offset}"))
        handle = Group(f"Variable[{hint(ref)}](", args, ")", True)
        # .rodata is frozen at load: Final makes a write a type error too, not only a
        # run-time one (set constants before load: load(constants={...}))
        lead = f"{attr}: Final = " if v.readonly else f"{attr} = "
        lines.append(text(handle, indent=4, lead=lead))
    return lines


def _programs(model: ObjectModel) -> list[str]:
    """One line per program; its section is libbpf's, read at load."""
    attrs = _attributes((p.name for p in model.programs), "program", "programs")
    calls = [Group("program_spec(", (_lit(p.name),), ")", call=True) for p in model.programs]
    return [
        text(call, indent=4, lead=f"{attr}: Program = ")
        for call, attr in zip(calls, attrs, strict=True)
    ]


def _settings(fmt: Formatter, model: ObjectModel) -> list[str]:
    """The TypedDicts of load()'s settings, keyed by the object's C names (functional
    syntax: a C name may be a Python keyword)."""
    tables = (
        ("Constants", [(v.name, hint(_map_ref(fmt, v.type, v.name))) for v in model.variables]),
        ("MaxEntries", [(m.name, "int") for m in model.maps]),
        ("Autoload", [(p.name, "bool") for p in model.programs]),
    )
    out = []
    for name, entries in tables:
        if all(naming.identifier(k) == k and not keyword.iskeyword(k) and not k.startswith("__")
               for k, _ in entries):  # fmt: skip
            # class syntax where it can spell the names (ruff's UP013 asks for it)
            body = [f"{k}: {t}" for k, t in entries] or ["pass"]
            out.append("\n".join([f"class {name}(TypedDict, total=False):",
                                  *(f"        {line}" for line in body)]))  # fmt: skip
            continue
        items = tuple(Atom(f"{naming.py_str(k)}: {t}") for k, t in entries)
        call = Group("TypedDict(", (Atom(naming.py_str(name)), Group("{", items, "}", call=False),
                                    Atom("total=False")), ")", call=True)  # fmt: skip
        out.append(text(call, indent=4, lead=f"{name} = "))
    return out


def _object_spec(stem: str, objects: Mapping[str, tuple[str, str]]) -> str:
    files = tuple(
        Group(
            f"{naming.py_str(order)}: ObjectFile(",
            (_lit(filename), Atom(f"sha256={naming.py_str(digest)}")),
            ")",
            call=True,
        )
        for order, (filename, digest) in sorted(objects.items())
    )
    args: tuple[Node, ...] = (
        Atom(f"name={naming.py_str(stem)}"),
        Atom("package=__name__"),
        Group("files={", files, "}", call=False),
        Atom("objects=Objects"),
        Atom("maps_class=Maps"),
        Atom("programs_class=Programs"),
        Atom("variables_class=Variables"),
    )
    return text(Group("ObjectSpec(", args, ")", call=True), lead="OBJECT: ObjectSpec[Objects] = ")
