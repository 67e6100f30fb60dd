"""ObjectModel -> the text of a generated module (templates/module.py.j2).

Everything the template prints arrives precomputed here: names from ``naming``, layouts from
``ctypes_fmt``, expressions laid out by ``pyfmt``. The template only loops and branches.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from . import __version__, naming
from .collect import Collected, collect
from .ctypes_fmt import ArrayOf, ClassRef, CRef, EnumDecl, Formatter, Record, Scalar
from .errors import GenError
from .model import MapDef, ObjectModel
from .pyfmt import Atom, Group, Node, text

_HANDLES = {
    "HASH": "HashMap",
    "LRU_HASH": "HashMap",
    "PERCPU_HASH": "PerCPUHashMap",
    "LRU_PERCPU_HASH": "PerCPUHashMap",
    "ARRAY": "ArrayMap",
    "PERCPU_ARRAY": "PerCPUArrayMap",
    "PROG_ARRAY": "ProgArray",
    "PERF_EVENT_ARRAY": "PerfEventArray",
    "RINGBUF": "RingBuf",
}
_KEY_VALUE = ("HashMap", "PerCPUHashMap", "ArrayMap", "PerCPUArrayMap")
_EVENTS = ("PerfEventArray", "RingBuf")


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ebpf_gen.templates", ""),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # the output is Python; every value is escaped by naming/pyfmt
    )


def render_module(
    model: ObjectModel,
    *,
    stem: str,
    source: str | None,
    command: str,
    objects: Mapping[str, tuple[str, str]],
    types: Sequence[str] = (),
    all_types: bool = False,
) -> str:
    ctx = module_context(
        model,
        stem=stem,
        source=source,
        command=command,
        objects=objects,
        types=types,
        all_types=all_types,
    )
    return environment().get_template("module.py.j2").render(**ctx)


@dataclass(frozen=True)
class _ClassBlock:
    """One struct/union/enum class, ready to print."""

    header: str
    doc: str
    body: tuple[str, ...]  # statements, each possibly several lines, indented by 4
    after: str  # the check_layout(...) call, "" for enums


def module_context(
    model: ObjectModel,
    *,
    stem: str,
    source: str | None,
    command: str,
    objects: Mapping[str, tuple[str, str]],
    types: Sequence[str] = (),
    all_types: bool = False,
) -> dict[str, Any]:
    coll = collect(model, types=types, all_types=all_types)
    fmt = Formatter(model.btf, coll.names, c_names=coll.c_names, docs=coll.docs)
    used: set[str] = {"MapsBase", "ProgramsBase", "VariablesBase", "ObjectsBase", "ObjectSpec"}
    used |= {"ObjectFile", "OpenObject"}
    classes: list[_ClassBlock] = []
    uses_enum = False
    for tid in coll.order:
        if tid in coll.names and model.btf[tid].kind.name == "ENUM":
            classes.append(_enum_block(fmt.enum(tid)))
            uses_enum = True
        else:
            classes.append(_record_block(fmt, fmt.record(tid), used))
            used.add("check_layout")
    c_types = _c_types(fmt, coll)
    maps, map_specs = _maps(fmt, model, used)
    variables, var_specs = _variables(fmt, model, used)
    program_attrs = _attributes((p.name for p in model.programs), "program", "programs")
    programs = _programs(model, program_attrs)
    if map_specs:
        used |= {"MapSpec", "MapKind"}
    if programs:
        used |= {"ProgramSpec", "Program"}
    if var_specs:
        used |= {"VariableSpec", "Variable"}
    obj = _object_spec(stem, objects, map_specs, programs, var_specs)
    code = [obj, c_types, *maps, *variables, *(c.after for c in classes)]
    code += [stmt for c in classes for stmt in c.body]
    return {
        "docstring": _module_doc(stem, source, command),
        "uses_enum": uses_enum,
        # string literals hold only escaped C names, so "ctypes." in code means a use
        "uses_ctypes": any("ctypes." in c for c in code),
        "imports": _imports(used),
        "classes": classes,
        "c_types": c_types,
        "maps": maps,
        "programs": [f"{attr}: Program" for attr in program_attrs],
        "variables": variables,
        "object_spec": obj,
    }


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


def _module_doc(stem: str, source: str | None, command: str) -> str:
    built = naming.doc_text(source) if source else f"{naming.doc_text(stem)}.bpf.o"
    lines = [
        f"Skeleton for the BPF object built from {built}.",
        "",
        f"Code generated by ebpf-gen {__version__}. DO NOT EDIT.",
    ]
    wrapped = textwrap.wrap(
        "Regenerate: " + naming.doc_text(command),
        width=96,
        subsequent_indent="    ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join([*lines, *wrapped])


def expr(ref: CRef) -> str:
    if isinstance(ref, Scalar):
        return f"ctypes.{ref.ctype}"
    if isinstance(ref, ArrayOf):
        return f"{expr(ref.elem)} * {ref.length}"
    return ref.name


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


def _record_block(fmt: Formatter, rec: Record, used: set[str]) -> _ClassBlock:
    body: list[str] = []
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
    body.append(text(Group("[", tuple(items), "]", call=False), indent=4, lead="_fields_ = "))
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
        body.append(text(Group("Bitfield(", args, ")", call=True), indent=4, lead=f"{bf.name} = "))
    base = "ctypes.Union" if rec.is_union else "ctypes.Structure"
    offsets = tuple(Atom(f"{naming.py_str(k)}: {v}") for k, v in rec.offsets.items())
    check = Group(
        "check_layout(",
        (Atom(rec.name), Atom(f"size={rec.size}"), Group("offsets={", offsets, "}", call=False)),
        ")",
        call=True,
    )
    return _ClassBlock(
        header=f"class {rec.name}({base}):",
        doc=naming.doc_text(rec.doc),
        body=tuple(body),
        after=text(check),
    )


def flat_tuple(parts: list[Atom]) -> str:
    return "(" + ", ".join(p.text for p in parts) + ")"


def _lit(s: str) -> Atom:
    return Atom(naming.py_str(s))


def _enum_block(decl: EnumDecl) -> _ClassBlock:
    body = tuple(f"{name} = {value}" for name, value in decl.values) or ("pass",)
    return _ClassBlock(
        header=f"class {decl.name}(enum.IntEnum):",
        doc=naming.doc_text(decl.doc),
        body=body,
        after="",
    )


def _c_types(fmt: Formatter, coll: Collected) -> str:
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
        if target.kind.name == "ENUM" and target.id in coll.names:
            entries.append((name, coll.names[target.id]))
        else:
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


def _maps(fmt: Formatter, model: ObjectModel, used: set[str]) -> tuple[list[str], list[Node]]:
    annotations: list[str] = []
    specs: list[Node] = []
    attrs = _attributes((m.name for m in model.maps), "map", "maps")
    for m, attr in zip(model.maps, attrs, strict=True):
        where = f"map {m.name}"
        kind = _map_kind(m)
        handle = _HANDLES.get(kind, "Map")
        used.add(handle)
        key = _map_ref(fmt, m.key_type, where)
        value = _map_ref(fmt, m.value_type, where)
        event = _map_ref(fmt, m.event_type, where)
        if handle in _KEY_VALUE:
            ann = f"{handle}[{hint(key)}, {hint(value)}]"
        elif handle in _EVENTS:
            ann = f"{handle}[{hint(event)}]"
        else:
            ann = handle
        annotations.append(f"{attr}: {ann}")
        args = (
            _lit(m.name),
            Atom(f"MapKind.{kind}"),
            Atom(f"key={expr(key) if key else None}"),
            Atom(f"value={expr(value) if value else None}"),
            Atom(f"event={expr(event) if event else None}"),
            Atom(f"max_entries={m.max_entries}"),
            Atom(f"flags={m.flags}"),
            *_attr_arg(m.name, attr),
        )
        specs.append(Group("MapSpec(", args, ")", call=True))
    return annotations, specs


def _map_kind(m: MapDef) -> str:
    kind = m.map_type_name
    if naming.identifier(kind) != kind or not kind.isupper():
        raise GenError(f"map type name {kind!r} is not a BPF_MAP_TYPE_ name", where=m.name)
    return kind


def _variables(fmt: Formatter, model: ObjectModel, used: set[str]) -> tuple[list[str], list[Node]]:
    attrs: list[str] = []
    specs: list[Node] = []
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
        handle = Group(f"Variable[{hint(ref)}](", (_lit(v.section), _lit(v.name)), ")", True)
        attrs.append(text(handle, indent=4, lead=f"{attr} = "))
        specs.append(
            Group(
                "VariableSpec(",
                (
                    _lit(v.name),
                    Atom(f"section={naming.py_str(v.section)}"),
                    Atom(f"offset={v.offset}"),
                    Atom(f"type={expr(ref)}"),
                ),
                ")",
                call=True,
            )
        )
    return attrs, specs


def _programs(model: ObjectModel, attrs: list[str]) -> list[Node]:
    return [
        Group(
            "ProgramSpec(",
            (_lit(p.name), Atom(f"section={naming.py_str(p.section)}"), *_attr_arg(p.name, attr)),
            ")",
            call=True,
        )
        for p, attr in zip(model.programs, attrs, strict=True)
    ]


def _attr_arg(c_name: str, attr: str) -> tuple[Atom, ...]:
    # Only where the attribute differs, so that most specs read as before
    return () if attr == c_name else (Atom(f"attr={naming.py_str(attr)}"),)


def _object_spec(
    stem: str,
    objects: Mapping[str, tuple[str, str]],
    maps: list[Node],
    programs: list[Node],
    variables: list[Node],
) -> str:
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
        Group("maps=(", tuple(maps), ")", call=False),
        Group("programs=(", tuple(programs), ")", call=False),
        Group("variables=(", tuple(variables), ")", call=False),
        Atom("objects=Objects"),
        Atom("maps_class=Maps"),
        Atom("programs_class=Programs"),
        Atom("variables_class=Variables"),
    )
    return text(Group("ObjectSpec(", args, ")", call=True), lead="OBJECT: ObjectSpec[Objects] = ")
