"""Python values <-> bytes of a ctypes type, as maps and global variables hold them.

Integer scalars travel as ``int``, ``char[N]`` as ``bytes`` (NUL-trimmed on read, zero-padded
on write, like ctypes struct fields), structs/unions/other arrays as their ctypes class,
always copied out so no value is a view into a buffer the runtime reuses.
"""

from __future__ import annotations

import ctypes

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from .spec import CType

_INT_CODES = "bBhHiIlLqQ?"
_FLOAT_CODES = "fdg"


def type_name(ctype: CType | None) -> str:
    if ctype is None:
        return "bytes"
    if _is_char_array(ctype):
        return f"bytes (char[{ctype._length_}])"
    if _int_code(ctype):
        return f"int ({ctype.__name__})"
    return ctype.__name__


def _int_code(ctype: CType) -> str | None:
    code = getattr(ctype, "_type_", None)
    if isinstance(code, str) and code in _INT_CODES and issubclass(ctype, ctypes._SimpleCData):
        return code
    return None


def _is_char_array(ctype: CType) -> bool:
    item: object = getattr(ctype, "_type_", None)
    return issubclass(ctype, ctypes.Array) and item is ctypes.c_char


class Codec:
    """Encodes into / decodes from an instance of ``ctype`` (its ``buffer``)."""

    def __init__(self, ctype: CType | None, size: int, what: str) -> None:
        if ctype is not None and ctypes.sizeof(ctype) != size:
            raise TypeError(
                f"{what}: type {ctype.__name__} is {ctypes.sizeof(ctype)} bytes, "
                f"the kernel object has {size}"
            )
        self.ctype: CType = ctype if ctype is not None else ctypes.c_uint8 * size
        self.size = size
        self.what = what
        self.expected = type_name(ctype)
        code = _int_code(self.ctype) if ctype is not None else None
        self.kind = (
            "int"
            if code
            else "float"
            if getattr(self.ctype, "_type_", None) in tuple(_FLOAT_CODES)
            and issubclass(self.ctype, ctypes._SimpleCData)
            else "raw"
            if ctype is None
            else "chars"
            if _is_char_array(self.ctype)
            else "object"
        )
        if code:
            bits = 8 * size
            signed = code in "bhilq"
            self.lo = -(1 << (bits - 1)) if signed else 0
            self.hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
            if code == "?":
                self.lo, self.hi = 0, 1

    def buffer(self) -> Any:
        return self.ctype()

    def _type_error(self, value: object) -> TypeError:
        return TypeError(f"{self.what} must be {self.expected}, got {type(value).__name__}")

    def encode(self, value: object, buf: Any) -> None:
        kind = self.kind
        if kind == "int":
            if not isinstance(value, int):
                if isinstance(value, self.ctype):
                    value = value.value
                else:
                    raise self._type_error(value)
            assert isinstance(value, int)
            if not self.lo <= value <= self.hi:
                raise ValueError(
                    f"{self.what}: {value} out of range for {self.expected} [{self.lo}, {self.hi}]"
                )
            buf.value = value
        elif isinstance(value, self.ctype):
            ctypes.memmove(ctypes.addressof(buf), ctypes.addressof(value), self.size)
        elif kind == "chars" or kind == "raw":
            if not isinstance(value, (bytes, bytearray)):
                raise self._type_error(value)
            limit = self.size
            if len(value) > limit or (kind == "raw" and len(value) != limit):
                raise ValueError(
                    f"{self.what}: {len(value)} bytes do not fit {self.expected} "
                    f"({self.size} bytes)"
                )
            addr = ctypes.addressof(buf)
            ctypes.memset(addr, 0, self.size)
            ctypes.memmove(addr, bytes(value), len(value))
        elif kind == "float":
            if not isinstance(value, (int, float)):
                raise self._type_error(value)
            buf.value = value
        else:
            raise self._type_error(value)

    def decode(self, buf: Any) -> Any:
        kind = self.kind
        if kind == "int" or kind == "float":
            return buf.value
        if kind == "chars":
            return bytes(buf).split(b"\0", 1)[0]
        if kind == "raw":
            return bytes(buf)
        return self.ctype.from_buffer_copy(buf)
