"""Every name the generator writes, decided here.

Names come from the object file and are untrusted: each one passes through ``identifier``
(anything outside ``[A-Za-z_][A-Za-z0-9_]*`` is replaced) before it can reach Python text,
and C names shown to the reader go through ``py_str``/``doc_text`` (escaped literals).
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterable

from .errors import GenError
from .runtime.spec import MODULE_IMPORTS

_SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_]")

# The generator's own module-level names: stdlib imports and what the module defines.
MODULE_GLOBALS = frozenset(
    {"annotations", "ctypes", "enum", "Mapping", "TypedDict", "C_TYPES", "OBJECT", "load", "open",
     "Maps", "Programs", "Variables", "Objects", "Constants", "Autoload", "MaxEntries",
     "TYPE_CHECKING", "Final", "Sequence"}
)  # fmt: skip
# A class may not take a module-level name: the module's own, or any it may import from the
# runtime (spec.MODULE_IMPORTS, the one list of them).
RESERVED_MODULE_NAMES = MODULE_GLOBALS | MODULE_IMPORTS
_BUILTINS = frozenset(dir(builtins))
# Members an IntEnum class already has: a C enumerator may not hide them.
_ENUM_ATTRS = frozenset({"name", "value", "mro"})


def identifier(name: str) -> str:
    """A safe Python identifier for an untrusted name (not yet escaped for keywords)."""
    if _SAFE.match(name) and name.isascii():
        return name
    cleaned = _UNSAFE_CHARS.sub("_", name.encode("ascii", "backslashreplace").decode())
    if not cleaned or cleaned[0].isdigit():
        cleaned = "_" + cleaned
    return cleaned


def escape(name: str, *, builtins_too: bool = False) -> str:
    """The one escaping rule: a trailing ``_`` for keywords (and builtins where a class body
    or module scope would let the name shadow them)."""
    name = identifier(name)
    if keyword.iskeyword(name) or (
        builtins_too and (name in _BUILTINS or name in RESERVED_MODULE_NAMES)
    ):
        return name + "_"
    if name.startswith("_") and name.endswith("_") and len(name) > 1:
        # ctypes and enum reserve _sunder_ names (_fields_, _pack_, _missing_)
        return name + "_"
    return name


def field_name(c_name: str) -> str:
    """A struct/union member keeps its C name, escaped."""
    return escape(c_name)


def attribute_name(c_name: str) -> str:
    """A map/program/variable attribute on the Maps/Programs/Variables classes."""
    return escape(c_name, builtins_too=True)


def enum_member(c_name: str) -> str:
    name = escape(c_name)
    if name.startswith("_") or name in _ENUM_ATTRS:
        # enum treats _names specially and name/value are Enum attributes
        return "V" + name if name.startswith("_") else name + "_"
    return name


def cap_words(c_name: str) -> str:
    """``data_t`` -> ``DataT``, ``task_struct`` -> ``TaskStruct``, ``XDPMd`` stays."""
    parts = [p for p in identifier(c_name).split("_") if p]
    if not parts:
        return "Anon"
    words = "".join(p[0].upper() + p[1:] for p in parts)
    if words[0].isdigit():
        words = "T" + words
    return words


def anonymous_class(parent: str, member: str | None, index: int) -> str:
    """Class of an anonymous struct/union/enum: after the member that holds it (``OuterU``),
    or numbered within its parent when the member has no name (``Outer_Anon0``)."""
    if member:
        return parent + cap_words(member)
    return f"{parent}_Anon{index}"


def anonymous_field(index: int) -> str:
    return f"_anon{index}"


def padding(offset: int) -> str:
    return f"_pad_{offset}"


def bitfield_storage(offset: int) -> str:
    return f"_bitfield_{offset}"


def raw_storage(offset: int) -> str:
    """The bytes behind a member ctypes cannot declare (a 128-bit integer)."""
    return f"_raw_{offset}"


def section_name(section: str) -> str:
    """``.data.foo`` -> ``data_foo``, ``.rodata`` -> ``rodata``."""
    return identifier(section.lstrip(".").replace(".", "_")) or "section"


class NameTable:
    """Hands out unique names in a namespace; a taken name is numbered ``Name_1``, ``Name_2``.

    Deterministic as long as callers ask in a deterministic order.
    """

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._taken = set(taken)

    def take(self, wanted: str) -> str:
        name, n = wanted, 0
        while name in self._taken:
            n += 1
            name = f"{wanted}_{n}"
        self._taken.add(name)
        return name

    def claim(self, name: str, *, what: str, hint: str) -> str:
        """Take exactly ``name`` or fail: for names a user addresses by their C spelling."""
        if name in self._taken:
            raise GenError(f"{what}: Python name {name!r} is already used ({hint})")
        self._taken.add(name)
        return name

    def __contains__(self, name: str) -> bool:
        return name in self._taken


def py_str(text: str) -> str:
    """A string literal for ``text`` as ruff format writes it: double quotes unless the text
    holds more double than single quotes; every non-printable character escaped."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    out = [quote]
    for ch in text:
        if ch == "\\" or ch == quote:
            out.append("\\" + ch)
        elif ch.isprintable() and ch.isascii():
            out.append(ch)
        else:
            out.append(_escape_char(ch))
    out.append(quote)
    return "".join(out)


def doc_text(text: str) -> str:
    """``text`` made safe inside a triple-quoted docstring (no quote, backslash or control
    character survives unescaped)."""
    out = []
    for ch in text:
        if ch in "\\\"":
            out.append("\\" + ch)
        elif ch.isprintable() and ch.isascii():
            out.append(ch)
        else:
            out.append(_escape_char(ch))
    return "".join(out)


def _escape_char(ch: str) -> str:
    simple = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in simple:
        return simple[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
