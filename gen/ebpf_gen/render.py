"""ObjectModel -> the text of a generated module (templates/module.py.j2), in two steps.

``plan_module`` decides everything as plain data (``ModulePlan``): names from ``naming``,
layouts from ``ctypes_fmt``, handles from ``runtime.spec``, Python types, imports. Then
``module_context`` only formats that plan, statements laid out by ``pyfmt``, and the
templates frame them (they only loop and branch).
"""

from __future__ import annotations

import dataclasses
import functools
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


@functools.cache  # one Environment keeps its compiled templates: parsing them costs ~5 ms
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


@dataclass(frozen=True)
class RecordPlan:
    record: Record
    # (name, annotation, enum class installed by check_layout, is a ctypes field), C order
    members: tuple[tuple[str, str, str, bool], ...]


@dataclass(frozen=True)
class MapPlan:
    attr: str
    name: str
    handle: str  # the runtime class, from spec.HANDLES
    params: tuple[str, ...]  # its type parameters as Python types (the inner's annotation)
    key: CRef | None
    value: CRef | None
    event: CRef | None
    inner: MapPlan | None

    @property
    def annotation(self) -> str:
        return f"{self.handle}[{', '.join(self.params)}]" if self.params else self.handle


@dataclass(frozen=True)
class VariablePlan:
    attr: str
    name: str
    section: str
    offset: int
    ref: CRef
    readonly: bool


@dataclass(frozen=True)
class ModulePlan:
    """Everything a module says, decided before any text is formed: names, layouts, Python
    types and imports. Rendering only formats it."""

    stem: str
    built_from: str
    files: tuple[tuple[str, str, str], ...]  # (byte order, file name, sha256), sorted
    big_endian: bool  # Bitfield bit numbering
    types: tuple[RecordPlan | EnumDecl, ...]  # in emission order
    c_types: tuple[tuple[str, str], ...]  # C name -> Python expression, sorted
    maps: tuple[MapPlan, ...]
    programs: tuple[tuple[str, str], ...]  # (attribute, C name)
    variables: tuple[VariablePlan, ...]
    settings: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # TypedDict -> (key, type)
    imports: frozenset[str]  # from ebpf_gen.runtime
    uses_ctypes: bool
    uses_sequence: bool


def plan_module(
    model: ObjectModel,
    *,
    stem: str,
    source: str | None,
    objects: Mapping[str, tuple[str, str]],
    types: Sequence[str] = (),
    all_types: bool = False,
) -> ModulePlan:
    model = dataclasses.replace(model, variables=_variables_shown(model))
    coll = collect(model, types=types, all_types=all_types)
    fmt = Formatter(model.btf, coll.names, c_names=coll.c_names, docs=coll.docs)
    records = {tid: fmt.record(tid) for tid in coll.order if not isinstance(model.btf[tid], Enum)}
    embedded = _anonymous_members(records.values())
    planned: list[RecordPlan | EnumDecl] = [
        RecordPlan(records[tid], tuple(_members(fmt, records[tid], tid not in embedded)))
        if tid in records else fmt.enum(tid)
        for tid in coll.order
    ]  # fmt: skip
    c_types = _c_types(fmt, coll)
    maps = tuple(
        _map_plan(fmt, m, attr)
        for m, attr in zip(model.maps, _attributes((m.name for m in model.maps), "map", "maps"),
                           strict=True)
    )  # fmt: skip
    prog_attrs = _attributes((p.name for p in model.programs), "program", "programs")
    programs = tuple(zip(prog_attrs, (p.name for p in model.programs), strict=True))
    variables = _variable_plans(fmt, model)
    settings = (
        ("Constants", tuple((v.name, hint(v.ref)) for v in variables)),
        ("MaxEntries", tuple((m.name, "int") for m in maps)),
        ("Autoload", tuple((name, "bool") for _, name in programs)),
    )
    refs: list[CRef] = [ref for _, (_, ref) in c_types if ref is not None]
    refs += [r for m in _all_maps(maps) for r in (m.key, m.value, m.event) if r is not None]
    refs += [v.ref for v in variables]
    return ModulePlan(
        stem=stem,
        built_from=source or f"{stem}.bpf.o",
        files=tuple((order, f, digest) for order, (f, digest) in sorted(objects.items())),
        big_endian=fmt.spec.byteorder == "big",
        types=tuple(planned),
        c_types=tuple((k, e) for k, (e, _) in c_types),
        maps=maps,
        programs=programs,
        variables=variables,
        settings=settings,
        imports=_imports_of(planned, maps, programs, variables),
        # decided from the plan: a Structure/Union class, or a ctypes scalar spelled
        uses_ctypes=bool(records) or any(map(_spells_ctypes, refs)),
        uses_sequence=any("Sequence[" in ann for t in planned if isinstance(t, RecordPlan)
                          for _, ann, _, _ in t.members),
    )  # fmt: skip


def _all_maps(maps: Iterable[MapPlan]) -> list[MapPlan]:
    out: list[MapPlan] = []
    for m in maps:
        out.append(m)
        if m.inner is not None:
            out += _all_maps((m.inner,))
    return out


def _imports_of(
    types: Sequence[RecordPlan | EnumDecl],
    maps: Sequence[MapPlan],
    programs: Sequence[tuple[str, str]],
    variables: Sequence[VariablePlan],
) -> frozenset[str]:
    used = {"MapsBase", "ProgramsBase", "VariablesBase", "ObjectsBase", "ObjectSpec",
            "ObjectFile", "OpenObject", "NO_SETTINGS"}  # fmt: skip
    for t in types:
        if isinstance(t, EnumDecl):
            used.add("CEnum")
            continue
        used |= {"check_layout", "CUnion" if t.record.is_union else "CStruct"}
        if t.record.bitfields:
            used.add("Bitfield")
    if maps:
        used.add("map_spec")
    for m in _all_maps(maps):
        used.add(m.handle)
        if PLAIN_HANDLE.name in m.params:  # a map of maps without a BTF template
            used.add(PLAIN_HANDLE.name)
    if programs:
        used |= {"Program", "program_spec"}
    if variables:
        used.add("Variable")
    return frozenset(used)


def module_context(
    model: ObjectModel,
    *,
    stem: str,
    source: str | None,
    objects: Mapping[str, tuple[str, str]],
    types: Sequence[str] = (),
    all_types: bool = False,
) -> dict[str, Any]:
    """The template's context: ``plan_module``'s decisions, formatted."""
    plan = plan_module(
        model, stem=stem, source=source, objects=objects, types=types, all_types=all_types
    )
    return {
        "docstring": _module_doc(plan.built_from),
        "uses_sequence": plan.uses_sequence,
        "uses_ctypes": plan.uses_ctypes,
        "imports": _imports(set(plan.imports)),
        "classes": [
            _record_block(t, plan.big_endian) if isinstance(t, RecordPlan) else _enum_block(t)
            for t in plan.types
        ],
        "c_types": text(Group("{", tuple(Atom(f"{naming.py_str(k)}: {v}") for k, v in
                                         plan.c_types), "}", call=False),
                        lead="C_TYPES: dict[str, type] = "),
        "maps": [text(_map_call(m), indent=4, lead=f"{m.attr}: {m.annotation} = ")
                 for m in plan.maps],
        "programs": [
            text(Group("program_spec(", (_lit(name),), ")", call=True), indent=4,
                 lead=f"{attr}: Program = ")
            for attr, name in plan.programs
        ],
        "variables": [_variable_line(v) for v in plan.variables],
        "object_spec": _object_spec(plan),
        "settings": [_settings_block(name, entries) for name, entries in plan.settings],
        "uses_final": any(v.readonly for v in plan.variables),
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


def _record_block(plan: RecordPlan, big_endian: bool) -> _ClassBlock:
    rec, members = plan.record, plan.members
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
        args: tuple[Atom, ...] = (
            _lit(bf.storage),
            Atom(f"bit={bf.bit}"),
            Atom(f"bits={bf.bits}"),
            Atom(f"signed={bf.signed}"),
        )
        if big_endian:
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


def _c_types(fmt: Formatter, coll: Collected) -> list[tuple[str, tuple[str, CRef | None]]]:
    """C_TYPES entries, sorted: C name -> (Python expression, the CRef it spells, if any)."""
    entries: list[tuple[str, tuple[str, CRef | None]]] = []
    for tid in coll.order:
        c_name = coll.c_names.get(tid, "")
        if c_name and not c_name.startswith(("struct ", "union ", "enum ")):
            continue  # a typedef'd anonymous type: the typedef entry below names it
        if c_name:
            entries.append((c_name, (coll.names[tid], None)))
    for name, tid in coll.typedefs:
        try:
            ref, _ = fmt.ref(tid)
        except GenError:
            continue  # typedefs of void or functions have no ctypes type
        target = fmt.spec.resolve(tid)
        if isinstance(target, Enum) and target.id in coll.names:
            entries.append((name, (coll.names[target.id], None)))
        else:
            entries.append((name, (expr(ref), ref)))
    return sorted(entries)


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


def _map_plan(fmt: Formatter, m: MapDef, attr: str) -> MapPlan:
    """One map: its handle from spec.HANDLES, typed by role; an inner template nested.
    Kind, max_entries and flags are not planned: libbpf reads them from the object."""
    where = f"map {m.name}"
    handle = handle_for(_map_kind(m))
    key = _map_ref(fmt, m.key_type, where)
    value = _map_ref(fmt, m.value_type, where)
    event = _map_ref(fmt, m.event_type, where)
    inner = _map_plan(fmt, m.inner, m.inner.name) if m.inner is not None else None
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
            params.append(inner.annotation if inner is not None else PLAIN_HANDLE.name)
        else:
            raise AssertionError(f"spec.HANDLES: unknown parameter role {role!r}")
    return MapPlan(attr, m.name, handle.name, tuple(params), key, value, event, inner)


def _map_call(m: MapPlan, lead: str = "map_spec(") -> Group:
    """``map_spec("name", key=..., value=..., event=..., inner=map_spec(...))``."""
    args: tuple[Node, ...] = (
        _lit(m.name),
        *(Atom(f"{role}={expr(ref)}") for role, ref in
          (("key", m.key), ("value", m.value), ("event", m.event)) if ref is not None),
        *((_map_call(m.inner, "inner=map_spec("),) if m.inner is not None else ()),
    )  # fmt: skip
    return Group(lead, args, ")", call=True)


def _map_kind(m: MapDef) -> MapKind:
    try:
        return MapKind(m.map_type)
    except ValueError:
        raise GenError(f"map type {m.map_type} is not a BPF_MAP_TYPE_", where=m.name) from None


def _variable_plans(fmt: Formatter, model: ObjectModel) -> tuple[VariablePlan, ...]:
    out: list[VariablePlan] = []
    table = naming.NameTable()
    for v in model.variables:
        where = f"variable {v.name} ({v.section})"
        ref = _map_ref(fmt, v.type, where)
        assert ref is not None
        attr = table.claim(
            naming.attribute_name(v.name),
            what=where,
            hint="two globals escape to the same Python name; rename one in C",
        )
        out.append(VariablePlan(attr, v.name, v.section, v.offset, ref, v.readonly))
    return tuple(out)


def _variable_line(v: VariablePlan) -> str:
    """``attr = Variable[int](".bss", "name", ctypes.c_uint64, offset=0)`` (the offset: the
    runtime reads and writes the section's memory at it)."""
    args = (_lit(v.section), _lit(v.name), Atom(expr(v.ref)), Atom(f"offset={v.offset}"))
    handle = Group(f"Variable[{hint(v.ref)}](", args, ")", True)
    # .rodata is frozen at load: Final makes a write a type error too, not only a run-time
    # one (set constants before load: load(constants={...}))
    return text(handle, indent=4, lead=f"{v.attr}: Final = " if v.readonly else f"{v.attr} = ")


def _settings_block(name: str, entries: Sequence[tuple[str, str]]) -> str:
    """A TypedDict of load()'s settings, keyed by the object's C names: class syntax where
    the names allow it (ruff's UP013 asks for it), else the functional form (a C name may be
    a Python keyword)."""
    if all(naming.identifier(k) == k and not keyword.iskeyword(k) and not k.startswith("__")
           for k, _ in entries):  # fmt: skip
        body = [f"{k}: {t}" for k, t in entries] or ["pass"]
        return "\n".join([f"class {name}(TypedDict, total=False):",
                          *(f"        {line}" for line in body)])  # fmt: skip
    items = tuple(Atom(f"{naming.py_str(k)}: {t}") for k, t in entries)
    call = Group("TypedDict(", (Atom(naming.py_str(name)), Group("{", items, "}", call=False),
                                Atom("total=False")), ")", call=True)  # fmt: skip
    return text(call, indent=4, lead=f"{name} = ")


def _object_spec(plan: ModulePlan) -> str:
    files = tuple(
        Group(
            f"{naming.py_str(order)}: ObjectFile(",
            (_lit(filename), Atom(f"sha256={naming.py_str(digest)}")),
            ")",
            call=True,
        )
        for order, filename, digest in plan.files
    )
    args: tuple[Node, ...] = (
        Atom(f"name={naming.py_str(plan.stem)}"),
        Atom("package=__name__"),
        Group("files={", files, "}", call=False),
        Atom("objects=Objects"),
        Atom("maps_class=Maps"),
        Atom("programs_class=Programs"),
        Atom("variables_class=Variables"),
    )
    return text(Group("ObjectSpec(", args, ")", call=True), lead="OBJECT: ObjectSpec[Objects] = ")
