"""Build the ObjectModel (maps, programs, global variables) of a compiled BPF object.

Maps are read from the BTF-defined ``.maps`` section the way libbpf's parse_btf_map_def
does: ``__uint(name, N)`` is a pointer to an array of N elements, ``__type(name, T)`` a
pointer to T, ``__array(values, struct inner)`` a zero-length array of pointers to the
inner map's definition.
"""

from __future__ import annotations

from pathlib import Path

from .btf.decode import decode_btf
from .btf.types import Array, DataSec, FuncProto, Kind, Ptr, Spec, Struct, Var
from .elf import ElfObject, exposed, fixup_btf, parse_elf, read_bytes
from .errors import BTFError, ElfError
from .model import MapDef, ObjectModel, ProgramDef, VariableDef
from .runtime.spec import MapKind

# enum bpf_map_type: the runtime's MapKind is the one table (tests check it against the header)
MAP_TYPES: dict[int, str] = {int(kind): kind.name for kind in MapKind}
_MAP_IN_MAP = ("ARRAY_OF_MAPS", "HASH_OF_MAPS")
# Members libbpf accepts that the model has no use for
_IGNORED_MEMBERS = ("numa_node", "map_extra")


def read_object(path: Path) -> ObjectModel:
    """Read a compiled BPF object into the generator's model. Raises GenError naming ``path``."""
    return object_model(read_bytes(path), str(path))


def object_model(data: bytes, where: str) -> ObjectModel:
    """The model of an object already in memory; errors name ``where``."""
    obj = parse_elf(data, where)
    spec = decode_btf(obj.btf, where=f"{where}: .BTF")
    return model_from(obj, spec)


def model_from(obj: ElfObject, raw: Spec) -> ObjectModel:
    spec = fixup_btf(raw, obj)
    return ObjectModel(
        btf=spec,
        maps=_maps(spec, obj),
        programs=_programs(obj),
        variables=_variables(spec, obj),
    )


def _datasecs(spec: Spec) -> list[DataSec]:
    return [t for t in spec.types if isinstance(t, DataSec)]


def _is_variable_section(name: str) -> bool:
    return name in (".data", ".bss", ".rodata") or name.startswith((".data.", ".rodata.", ".bss."))


def _variables(spec: Spec, obj: ElfObject) -> tuple[VariableDef, ...]:
    out: list[VariableDef] = []
    for sec in _datasecs(spec):
        if not _is_variable_section(sec.name):
            continue
        for vsi in sec.vars:
            if not exposed(spec, obj, vsi.type):
                continue
            var = spec[vsi.type]
            assert isinstance(var, Var)
            out.append(VariableDef(var.name, sec.name, vsi.offset, vsi.size, var.type))
    return tuple(out)


def _programs(obj: ElfObject) -> tuple[ProgramDef, ...]:
    by_section = {s.index: s for s in obj.sections}
    found: list[tuple[int, int, ProgramDef]] = []
    for sym in obj.symbols:
        sec = by_section.get(sym.section_index)
        if (
            sec is None
            or not sec.executable
            or sec.name == ".text"  # subprograms, called from programs, not loaded alone
            or sym.type != "STT_FUNC"
        ):
            continue
        if sym.bind not in ("STB_GLOBAL", "STB_WEAK"):
            # libbpf refuses to open the object ("program is static and not supported"):
            # say so now, not when the app first loads it.
            raise ElfError(
                f"program '{sym.name}' is static, and libbpf does not load static programs: "
                "drop 'static' from its definition",
                where=f"{obj.path}: section '{sec.name}'",
            )
        found.append((sec.index, sym.value, ProgramDef(sym.name, sec.name)))
    # libbpf's order: by section, then by offset within it
    return tuple(p for _, _, p in sorted(found, key=lambda f: (f[0], f[1])))


def _maps(spec: Spec, obj: ElfObject) -> tuple[MapDef, ...]:
    secs = [s for s in _datasecs(spec) if s.name == ".maps"]
    if not secs:
        return ()
    out: list[MapDef] = []
    for vsi in secs[0].vars:
        var = spec[vsi.type]
        if not isinstance(var, Var):
            continue
        where = f"{obj.path}: .maps: map '{var.name}'"
        out.append(_map_def(spec, var.name, var.type, where))
    return tuple(out)


def _uint(spec: Spec, member_type: int, where: str) -> int:
    ptr = spec.resolve(member_type)
    arr = spec.resolve(ptr.type) if isinstance(ptr, Ptr) else None
    if not isinstance(arr, Array):
        raise BTFError("expected __uint(): a pointer to an array", where=where)
    return arr.nelems


def _type_of(spec: Spec, member_type: int, where: str) -> int:
    ptr = spec.resolve(member_type)
    if not isinstance(ptr, Ptr):
        raise BTFError("expected __type(): a pointer to the type", where=where)
    return ptr.type


def _map_def(spec: Spec, name: str, def_type: int, where: str) -> MapDef:
    try:
        st = spec.resolve(def_type)
    except (ValueError, IndexError) as e:
        raise BTFError(str(e), where=where) from e
    if not isinstance(st, Struct):
        raise BTFError(f"definition is a {st.kind.name}, expected a struct", where=where)
    map_type = key_size = value_size = max_entries = flags = pinning = 0
    key_type: int | None = None
    value_type: int | None = None
    inner: MapDef | None = None
    has_values_array = False
    for m in st.members:
        mwhere = f"{where}: member '{m.name}'"
        try:
            if m.name == "type":
                map_type = _uint(spec, m.type, mwhere)
            elif m.name == "max_entries":
                max_entries = _uint(spec, m.type, mwhere)
            elif m.name == "map_flags":
                flags = _uint(spec, m.type, mwhere)
            elif m.name == "key_size":
                key_size = _uint(spec, m.type, mwhere)
            elif m.name == "value_size":
                value_size = _uint(spec, m.type, mwhere)
            elif m.name == "pinning":
                pinning = _uint(spec, m.type, mwhere)
            elif m.name == "key":
                key_type = _type_of(spec, m.type, mwhere)
            elif m.name == "value":
                value_type = _type_of(spec, m.type, mwhere)
            elif m.name == "values":
                if name.endswith(".inner"):  # as libbpf: no maps of maps of maps
                    raise BTFError("multi-level inner maps are not supported", where=mwhere)
                has_values_array = True
                inner = _values(spec, name, m.type, mwhere)
            elif m.name in _IGNORED_MEMBERS:
                pass
            else:
                raise BTFError("unknown map definition member", where=mwhere)
        except (ValueError, IndexError) as e:  # Spec.resolve/sizeof on malformed BTF
            raise BTFError(str(e), where=mwhere) from e
    if map_type not in MAP_TYPES:
        raise ElfError(f"unknown map type {map_type}", where=where)
    type_name = MAP_TYPES[map_type]
    try:
        if key_type is not None:
            key_size = spec.sizeof(key_type)
        if value_type is not None:
            value_size = spec.sizeof(value_type)
    except ValueError as e:
        raise BTFError(str(e), where=where) from e
    if has_values_array:
        # map-in-map and prog array values are fds (u32), as libbpf sets them
        value_size = 4
    if type_name == "PERF_EVENT_ARRAY":
        # libbpf fills in the only sizes the kernel accepts for perf event arrays
        key_size = key_size or 4
        value_size = value_size or 4
    return MapDef(
        name=name,
        map_type=map_type,
        map_type_name=type_name,
        key_type=key_type,
        value_type=value_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        flags=flags,
        inner=inner,
        pinning=pinning,
    )


def _values(spec: Spec, outer: str, member_type: int, where: str) -> MapDef | None:
    arr = spec.resolve(member_type)
    if not isinstance(arr, Array):
        raise BTFError("expected __array(values, ...): an array", where=where)
    ptr = spec.resolve(arr.type)
    if not isinstance(ptr, Ptr):
        raise BTFError("expected __array(values, ...): an array of pointers", where=where)
    target = spec.resolve(ptr.type)
    if isinstance(target, FuncProto):
        return None  # a prog array's initial programs: no inner map
    if target.kind != Kind.STRUCT:
        raise BTFError(
            f"__array(values, ...) points to a {target.kind.name}, expected a struct", where=where
        )
    # libbpf names the template "<outer>.inner"
    return _map_def(spec, f"{outer}.inner", target.id, f"{where}: inner map")
