"""Layout checks and bitfield access for generated ctypes classes.

``check_layout`` runs at import of a generated module: if this Python's ctypes lays a class
out differently from the BTF the generator read, the import fails naming the member and both
offsets, instead of maps and events silently reading the wrong bytes.
"""

from __future__ import annotations

import ctypes
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any, Literal, overload


def check_layout(
    cls: type[Any],
    *,
    size: int,
    offsets: Mapping[str, int],
    bitfields: Mapping[str, Bitfield] | None = None,
) -> None:
    """Raise ImportError unless ``cls`` has BTF's ``size`` and member ``offsets``; then
    install the ``bitfields`` kept in raw storage.

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
