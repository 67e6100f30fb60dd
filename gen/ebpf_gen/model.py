"""What the object holds, in generator terms: maps, programs, global variables.

Built by ``objspec`` from the ELF and its BTF (with ``source`` filling in event types and
structs that clang left out of BTF), consumed by ``collect``/``render``. Types are referred
to by BTF type id into ``ObjectModel.btf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .btf.types import Spec
from .runtime.spec import HANDLES


@dataclass(frozen=True)
class MapDef:
    name: str
    map_type: int  # BPF_MAP_TYPE_* value
    map_type_name: str  # "HASH", "PERF_EVENT_ARRAY", ... (BPF_MAP_TYPE_ stripped)
    key_type: int | None  # BTF type id from __type(key, ...), None when only key_size is given
    value_type: int | None
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    inner: MapDef | None = None  # array/hash of maps: the __array(values, ...) template
    pinning: int = 0
    # The type of the records a PERF_EVENT_ARRAY / RINGBUF carries, inferred from the C
    # source; None when unknown (events read as bytes).
    event_type: int | None = None


@dataclass(frozen=True)
class ProgramDef:
    name: str  # the C function name
    section: str  # ELF section, e.g. "ksyscall/execve"


@dataclass(frozen=True)
class VariableDef:
    name: str
    section: str  # ".data", ".bss", ".rodata", ".data.foo", ".rodata.bar"
    offset: int  # within the section, fixed up from the ELF symbol
    size: int
    type: int  # BTF type id of the variable's type (not the VAR)

    @property
    def readonly(self) -> bool:
        return self.section.startswith(".rodata")


@dataclass(frozen=True)
class Diagnostic:
    """A compiler-style message: ``file:line:col: warning: text``."""

    file: str
    line: int
    column: int
    severity: str  # "warning" or "note"
    message: str

    def __str__(self) -> str:
        loc = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{loc}: {self.severity}: {self.message}"


# Map types whose values are records streamed to user space (their "event type"): the
# kinds whose runtime handle takes an event type parameter.
EVENT_MAP_TYPES = tuple(kind.name for kind, h in HANDLES.items() if "event" in h.params)


@dataclass(frozen=True)
class ObjectModel:
    btf: Spec
    maps: tuple[MapDef, ...]
    programs: tuple[ProgramDef, ...]
    variables: tuple[VariableDef, ...]
    # Ids of types appended to ``btf`` from the C source because clang left them out of BTF;
    # value: "file:line" of the definition, shown in the generated class docstring.
    source_types: dict[int, str] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()


def no_source_diagnostics(model: ObjectModel, object_path: str) -> tuple[Diagnostic, ...]:
    """Without the C source (``--object``), event maps cannot be typed: say so per map."""
    return tuple(
        Diagnostic(object_path, 0, 0, "warning",
                   f"map '{m.name}' ({m.map_type_name}): its event type cannot be inferred "
                   "without the C source, so its events are read as bytes; generate from the "
                   "C source to type its events")
        for m in model.maps
        if m.map_type_name in EVENT_MAP_TYPES and m.event_type is None
    )
