"""Layout checks and bitfield access for generated ctypes classes.

``check_layout`` runs at import of a generated module: if this Python's ctypes lays a class
out differently from the BTF the generator read, the import fails naming the member and both
offsets, instead of maps and events silently reading the wrong bytes.
"""

from __future__ import annotations

import ctypes
import enum
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, ClassVar, Literal, overload


def check_layout(
    cls: type[Any],
    *,
    size: int,
    offsets: Mapping[str, int],
    bitfields: Mapping[str, Bitfield] | None = None,
    enums: Mapping[str, type[enum.IntEnum]] | None = None,
) -> None:
    """Raise ImportError unless ``cls`` has BTF's ``size`` and member ``offsets``; then
    install the ``bitfields`` kept in raw storage and make the ``enums`` fields read as
    their IntEnum class.

    The bitfield descriptors are set here rather than in the class body so that a member
    called ``__x`` keeps that name: inside a class body Python would mangle it to
    ``_Cls__x`` and ``obj.__x`` would fail.
    """
    actual = ctypes.sizeof(cls)
    if actual != size:
        raise ImportError(
            f"layout of {cls.__name__}: ctypes size is {actual} bytes, BTF says {size}"
        )
    for member, offset in offsets.items():
        field = cls.__dict__.get(member)
        if field is None or not hasattr(field, "offset"):
            raise ImportError(
                f"layout of {cls.__name__}: member {member!r} (BTF offset {offset}) "
                "is not a ctypes field"
            )
        if field.offset != offset:
            raise ImportError(
                f"layout of {cls.__name__}: member {member!r} is at offset {field.offset} "
                f"in ctypes, BTF says {offset}"
            )
    for name, bitfield in (bitfields or {}).items():
        bitfield.__set_name__(cls, name)
        setattr(cls, name, bitfield)
    for name, enum_class in (enums or {}).items():
        setattr(cls, name, EnumField(cls.__dict__[name], enum_class))


class EnumField:
    """A ctypes field of an enum's integer type that reads as the generated IntEnum.

    Values outside the enumerators read as pseudo-members (see ``CEnum``), so an event
    carrying a value the C enum gained later still decodes.
    """

    def __init__(self, field: Any, enum_class: type[enum.IntEnum]) -> None:
        self.field = field
        self.enum_class = enum_class
        self.offset: int = field.offset
        self.size: int = field.size

    def __get__(self, obj: object, objtype: type[Any] | None = None) -> Any:
        if obj is None:
            return self
        return self.enum_class(self.field.__get__(obj, objtype))

    def __set__(self, obj: object, value: int) -> None:
        self.field.__set__(obj, int(value))


class CEnum(enum.IntEnum):
    """Base of generated enums: a value without an enumerator is a pseudo-member
    (``Color(7)`` is ``<Color.7: 7>``, equal to 7) rather than a ValueError."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int):
            return None
        member = int.__new__(cls, value)
        member._name_ = str(value)
        member._value_ = value
        return member


def _plain(value: object) -> object:
    """A JSON-ready value: records as dicts, arrays as lists, ``char[N]`` as str."""
    if isinstance(value, _Record):
        return value._asdict()
    if isinstance(value, ctypes.Array):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, enum.IntEnum):
        return int(value)
    return value


def _hashable(value: object) -> object:
    if isinstance(value, ctypes.Array):
        return tuple(_hashable(v) for v in value)
    return value


_MEMBERS: dict[type, tuple[str, ...]] = {}


class _Record:
    """repr, ``_asdict()`` and equality by value for generated structs and unions.

    The members are the class's annotations, in C order: every C member (bitfields and the
    members of anonymous structs included), never padding or bitfield storage.
    """

    __slots__ = ()

    @classmethod
    def _members(cls) -> tuple[str, ...]:
        members = _MEMBERS.get(cls)
        if members is None:
            # a class body mangles its own __x annotations to _Cls__x: undo that
            mangled = f"_{cls.__name__.lstrip('_')}__"
            members = tuple(
                "__" + name[len(mangled):] if name.startswith(mangled) else name
                # inspect.get_annotations would cost every skeleton the import of inspect
                for name in cls.__dict__.get("__annotations__", {})  # noqa: RUF063
            )
            _MEMBERS[cls] = members
        return members

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._members())

    def _asdict(self) -> dict[str, Any]:
        """The members as plain, JSON-ready values (nested records as dicts)."""
        return {name: _plain(getattr(self, name)) for name in self._members()}

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={_repr(getattr(self, name))}" for name in self._members()
        )
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Record)
        return tuple(map(_hashable, self._values())) == tuple(map(_hashable, other._values()))

    def __hash__(self) -> int:
        return hash(tuple(map(_hashable, self._values())))


def _repr(value: object) -> str:
    if isinstance(value, ctypes.Array):
        return "[" + ", ".join(_repr(v) for v in value) + "]"
    if isinstance(value, enum.IntEnum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


if TYPE_CHECKING:
    from _ctypes import _CData, _PyCStructType, _UnionType

    _Fields = Sequence[tuple[str, type[Any]] | tuple[str, type[Any], int]]

    class CStruct(_CData, metaclass=_PyCStructType):
        """A ctypes.Structure as mypy should see a generated one: its annotated members
        only (ctypes' own stub answers every attribute with Any)."""

        _fields_: ClassVar[_Fields]
        _pack_: ClassVar[int]
        _anonymous_: ClassVar[Sequence[str]]

        def __init__(self, *args: Any, **kw: Any) -> None: ...
        def _asdict(self) -> dict[str, Any]: ...

    class CUnion(_CData, metaclass=_UnionType):
        _fields_: ClassVar[_Fields]
        _pack_: ClassVar[int]
        _anonymous_: ClassVar[Sequence[str]]

        def __init__(self, *args: Any, **kw: Any) -> None: ...
        def _asdict(self) -> dict[str, Any]: ...

else:

    class CStruct(_Record, ctypes.Structure):
        """Base of generated structs: a ctypes.Structure that prints and compares by value."""

        __slots__ = ()

    class CUnion(_Record, ctypes.Union):
        """Base of generated unions."""

        __slots__ = ()


class Bitfield:
    """A C bitfield kept in raw storage bytes (``_bitfield_4: c_uint8 * N``): get/set as int.

    ``bit`` counts from the start of the storage the way BTF bit offsets do: on a
    little-endian object bit 0 is the least significant bit of the first byte; on a
    big-endian object (``byteorder="big"``) bit 0 is the most significant bit of the first
    byte. The generator passes the order of the object the class was laid out for.
    """

    def __init__(
        self,
        storage_field: str,
        *,
        bit: int,
        bits: int,
        signed: bool,
        byteorder: Literal["little", "big"] | None = None,
    ) -> None:
        if bits <= 0 or bit < 0:
            raise ValueError(f"bitfield in {storage_field}: bad bit={bit} bits={bits}")
        self.storage_field = storage_field
        self.bit = bit
        self.bits = bits
        self.signed = signed
        self.byteorder: Literal["little", "big"] = byteorder or sys.byteorder
        self.mask = (1 << bits) - 1
        self.name = f"<bitfield in {storage_field}>"

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = f"{owner.__name__}.{name}"

    def _shift(self, storage_bits: int) -> int:
        if self.byteorder == "little":
            return self.bit
        return storage_bits - self.bit - self.bits

    if TYPE_CHECKING:

        @overload
        def __get__(self, obj: None, objtype: type[Any] | None = None) -> Bitfield: ...

        @overload
        def __get__(self, obj: object, objtype: type[Any] | None = None) -> int: ...

    def __get__(self, obj: object, objtype: type[Any] | None = None) -> Bitfield | int:
        if obj is None:
            return self
        raw = bytes(getattr(obj, self.storage_field))
        word = int.from_bytes(raw, self.byteorder)
        value = (word >> self._shift(8 * len(raw))) & self.mask
        if self.signed and value >> (self.bits - 1):
            value -= 1 << self.bits
        return value

    def __set__(self, obj: object, value: int) -> None:
        if not isinstance(value, int):
            raise TypeError(f"{self.name} must be int, got {type(value).__name__}")
        lo, hi = (
            (-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1) if self.signed else (0, self.mask)
        )
        if not lo <= value <= hi:
            raise ValueError(f"{self.name}: {value} out of range [{lo}, {hi}] ({self.bits} bits)")
        storage = getattr(obj, self.storage_field)
        raw = bytes(storage)
        shift = self._shift(8 * len(raw))
        word = int.from_bytes(raw, self.byteorder)
        word = (word & ~(self.mask << shift)) | ((value & self.mask) << shift)
        new = word.to_bytes(len(raw), self.byteorder)
        ctypes.memmove(ctypes.addressof(storage), new, len(new))
