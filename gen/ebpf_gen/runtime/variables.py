"""Global variables (.data, .bss, .rodata, .data.*) read and written after load.

Scalars read as values; arrays, structs and unions of a mapped writable section read as
ctypes views onto the section, so ``objs.variables.freqs[0] = 1234`` reaches the kernel.

libbpf 1.1 does not remap its copy of global data onto the kernel map after a plain
bpf_object__load (only skeletons get that), so the runtime mmaps each BPF_F_MMAPABLE
section map itself: a read sees what the program wrote a moment ago and a write is seen
by the program's next run. Maps without the flag fall back to lookup/update of key 0.
"""

from __future__ import annotations

import ctypes

from . import libbpf
from .codec import Codec
from .errors import RuntimeBPFError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    import mmap
    from collections.abc import Iterable
    from typing import Any, Generic, TypeVar, overload

    from .spec import CType, VariableSpec
else:  # typing costs more start-up than the whole runtime: see _generic
    from ._generic import Generic, TypeVar

T = TypeVar("T")

BPF_F_MMAPABLE = 1 << 10


class Section:
    """The live memory of one global-data map."""

    def __init__(self, name: str, fd: int, size: int, flags: int, *, readonly: bool) -> None:
        self.name = name
        self.fd = fd
        self.size = size
        self.readonly = readonly
        self._mm: mmap.mmap | None = None
        if flags & BPF_F_MMAPABLE:
            import mmap  # only objects with global data need it

            prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
            self._mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=prot)
        self._closed = False

    def view(self, ctype: Any, offset: int) -> Any:
        """A ctypes object living in the mapped section (writes reach the kernel), or
        None where the section is not mapped writable (then values are copies)."""
        if self._closed:
            raise RuntimeBPFError(f"section {self.name}: objects are closed")
        if self._mm is None or self.readonly:
            return None
        return ctype.from_buffer(self._mm, offset)

    def read(self, offset: int, size: int) -> bytes:
        if self._closed:
            raise RuntimeBPFError(f"section {self.name}: objects are closed")
        if self._mm is not None:
            return self._mm[offset : offset + size]
        return self._lookup()[offset : offset + size]

    def write(self, offset: int, data: bytes) -> None:
        if self._closed:
            raise RuntimeBPFError(f"section {self.name}: objects are closed")
        if self._mm is not None:
            self._mm[offset : offset + len(data)] = data
            return
        whole = bytearray(self._lookup())
        whole[offset : offset + len(data)] = data
        key = ctypes.c_uint32(0)
        buf = (ctypes.c_uint8 * self.size).from_buffer(whole)
        libbpf.check(
            libbpf.lib().bpf_map_update_elem(self.fd, ctypes.byref(key), buf, 0),
            f"update of section map {self.name}",
        )

    def _lookup(self) -> bytes:
        key = ctypes.c_uint32(0)
        buf = (ctypes.c_uint8 * self.size)()
        libbpf.check(
            libbpf.lib().bpf_map_lookup_elem(self.fd, ctypes.byref(key), buf),
            f"lookup of section map {self.name}",
        )
        return bytes(buf)

    def close(self) -> None:
        self._closed = True
        if self._mm is not None:
            try:  # noqa: SIM105 - contextlib costs every skeleton its import
                self._mm.close()
            except BufferError:
                pass  # views handed out still use it: unmapped when the last one goes
            self._mm = None


_COMPOUND = (ctypes.Structure, ctypes.Union, ctypes.Array)


def _check(ctype: Any, value: object, what: str) -> Any:
    """``value`` as ctypes would store it into a ``ctype`` slot, range- and type-checked
    (ctypes itself truncates integers silently)."""
    if isinstance(value, Live):
        value = value.copy()
    codec = Codec(ctype, ctypes.sizeof(ctype), what)
    buf = codec.buffer()
    if issubclass(ctype, ctypes.Array) and isinstance(value, (list, tuple)):
        _fill(buf, value, what)
        return buf
    codec.encode(value, buf)
    return buf if codec.kind == "object" else value


def _fill(buf: Any, values: list[Any] | tuple[Any, ...], what: str) -> None:
    if len(values) > len(buf):
        raise ValueError(f"{what}: {len(values)} elements do not fit {len(buf)}")
    for i, v in enumerate(values):
        buf[i] = _check(buf._type_, v, f"{what}[{i}]")


class Live:
    """A view of an array, struct or union global inside the mapped section: reads see
    the kernel's current value, writes (range-checked, unlike bare ctypes) reach it.
    Nested arrays and structs are views too; ``copy()`` gives a detached ctypes value."""

    __slots__ = ("_obj", "_what")

    def __init__(self, obj: Any, what: str) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_what", what)

    def _wrap(self, value: Any, what: str) -> Any:
        chars = getattr(type(value), "_type_", None) is ctypes.c_char
        if isinstance(value, _COMPOUND) and not chars:
            return Live(value, what)
        return value

    def copy(self) -> Any:
        return type(self._obj).from_buffer_copy(self._obj)

    def _field(self, name: str) -> Any:
        for field in getattr(type(self._obj), "_fields_", ()):
            if field[0] == name:
                return field[1]
        return None

    def __getattr__(self, name: str) -> Any:
        return self._wrap(getattr(self._obj, name), f"{self._what}.{name}")

    def __setattr__(self, name: str, value: Any) -> None:
        ftype = self._field(name)
        if ftype is None:  # a Bitfield descriptor checks itself; else AttributeError
            if not hasattr(self._obj, name):
                raise AttributeError(f"{self._what} has no field {name!r}")
            setattr(self._obj, name, value)
            return
        setattr(self._obj, name, _check(ftype, value, f"{self._what}.{name}"))

    def __getitem__(self, index: int) -> Any:
        return self._wrap(self._obj[index], f"{self._what}[{index}]")

    def __setitem__(self, index: int, value: Any) -> None:
        if not isinstance(self._obj, ctypes.Array):
            raise TypeError(f"{self._what} is not an array")
        if not isinstance(index, int) or not -len(self._obj) <= index < len(self._obj):
            raise IndexError(f"{self._what}: index {index!r} out of range "
                             f"(length {len(self._obj)})")
        self._obj[index] = _check(self._obj._type_, value, f"{self._what}[{index}]")

    def __len__(self) -> int:
        return len(self._obj)

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self._obj)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Live):
            other = other.copy()
        return bytes(self._obj) == bytes(other) if isinstance(other, _COMPOUND) else (
            isinstance(other, (list, tuple)) and list(self) == list(other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if isinstance(self._obj, ctypes.Array):
            return f"<live {self._what}: {list(self)!r}>"
        return f"<live {self._what}: {type(self._obj).__name__}>"


class VariablesBase:
    """Holds the sections; generated subclasses declare ``Variable`` descriptors."""

    def __init__(self, specs: Iterable[VariableSpec], sections: dict[str, Section]) -> None:
        self._specs = {s.name: s for s in specs}
        self._codecs = {
            s.name: Codec(s.type, ctypes.sizeof(s.type), f"variable {s.name!r}")
            for s in self._specs.values()
        }
        self._sections = sections

    def _spec(self, name: str) -> VariableSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(
                f"no global variable {name!r}; known: {', '.join(sorted(self._specs))}"
            ) from None

    def _section(self, spec: VariableSpec) -> Section:
        section = self._sections.get(spec.section)
        if section is None:
            raise RuntimeBPFError(
                f"variable {spec.name!r}: section {spec.section} has no map in the loaded object"
            )
        return section

    def get(self, name: str) -> Any:
        """The current value of global ``name`` (by C name)."""
        spec = self._spec(name)
        codec = self._codecs[name]
        section = self._section(spec)
        if codec.kind == "object":  # arrays, structs, unions: a live view where possible
            view = section.view(codec.ctype, spec.offset)
            if view is not None:
                return Live(view, f"variable {name!r}")
        raw = section.read(spec.offset, codec.size)
        return codec.decode(codec.ctype.from_buffer_copy(raw))

    def set(self, name: str, value: object) -> None:
        """Write global ``name``; the program sees it on its next run."""
        spec = self._spec(name)
        section = self._section(spec)
        if section.readonly:
            raise RuntimeBPFError(
                f"variable {name!r} is in {spec.section}, which is frozen after load: "
                "set it before load with load(constants={...}) or open().set_constants()"
            )
        codec = self._codecs[name]
        buf = codec.buffer()
        if isinstance(value, Live):
            value = value.copy()
        if issubclass(codec.ctype, ctypes.Array) and isinstance(value, (list, tuple)):
            _fill(buf, value, f"variable {name!r}")  # element by element, each checked
        else:
            codec.encode(value, buf)
        section.write(spec.offset, bytes(buf))

    def _close(self) -> None:
        for section in self._sections.values():
            section.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {', '.join(sorted(self._specs))}>"


class Variable(Generic[T]):
    """Descriptor for one global: ``counter = Variable[int](".bss", "counter",
    ctypes.c_uint64, offset=0)`` (C name, ctypes type and offset in its section: the one
    line a generated module writes per variable)."""

    def __init__(
        self, section: str, name: str, type: CType | None = None, offset: int = 0
    ) -> None:
        self.section = section
        self.name = name
        self.type = type
        self.offset = offset

    @property
    def spec(self) -> VariableSpec:
        from .spec import VariableSpec

        if self.type is None:
            raise TypeError(f"variable {self.name!r}: declared without its ctypes type")
        return VariableSpec(self.name, self.section, self.offset, self.type)

    if TYPE_CHECKING:

        @overload
        def __get__(self, obj: None, objtype: type[Any] | None = None) -> Variable[T]: ...

        @overload
        def __get__(self, obj: VariablesBase, objtype: type[Any] | None = None) -> T: ...

    def __get__(
        self, obj: VariablesBase | None, objtype: type[Any] | None = None
    ) -> Variable[T] | T:
        if obj is None:
            return self
        value: T = obj.get(self.name)
        return value

    def __set__(self, obj: VariablesBase, value: T) -> None:
        obj.set(self.name, value)
