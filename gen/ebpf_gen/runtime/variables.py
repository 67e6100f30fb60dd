"""Global variables (.data, .bss, .rodata, .data.*) read and written after load.

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
            self._mm.close()
            self._mm = None


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
        raw = self._section(spec).read(spec.offset, codec.size)
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
