"""The only door to ``clang.cindex``: parsing, and typed wrappers over its cursors and types.

clang.cindex ships no types, so its ``Any`` stays in this module; the rest of the package
asks the few questions ``Node`` and ``CType`` answer.
"""

from __future__ import annotations

import functools
import glob
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compile import BPF_CFLAGS, INCLUDE_FLAGS, multiarch_include_flags
from ..errors import SourceError

# The compile's own flags (same macros, same headers); the compile's multiarch include dir
# is added in parse(), after the user's flags as in the compile.
BASE_FLAGS = (*BPF_CFLAGS, *INCLUDE_FLAGS)
# Compile-only flags that make no sense (or take an argument) for a parse.
_DROP_FLAGS = frozenset({"-c", "-S", "-emit-llvm", "-MD", "-MMD", "-MP"})
_DROP_WITH_ARG = frozenset({"-o", "-MF", "-MT", "-MQ"})


def _cindex() -> Any:
    try:
        import clang.cindex as ci  # type: ignore[import-untyped]
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise SourceError(f"libclang is not installed ({e}); pip install libclang") from e
    return ci


@dataclass(frozen=True)
class Loc:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class _Files:
    """How messages name the files clang reports: as the user would, from where we run."""

    source: Path  # as the user gave it
    given: str  # what clang was given: the resolved path, as the compile gives it

    def shown(self, name: str) -> str:
        if name == self.given:
            return str(self.source)
        # clang's working directory is the source's, as the compile's is: relative names
        # (headers found through -I include) start there
        return name if name.startswith("/") else str(self.source.parent / name)


def _loc(location: Any, files: _Files) -> Loc:
    return Loc(files.shown(location.file.name) if location.file else "",
               int(location.line), int(location.column))


class CType:
    """A clang type, with only the questions this package asks of it."""

    __slots__ = ("_files", "_t")

    def __init__(self, t: Any, files: _Files) -> None:
        self._t = t
        self._files = files

    @property
    def kind(self) -> str:
        return str(self._t.kind.name)

    @property
    def spelling(self) -> str:
        return str(self._t.spelling)

    @property
    def size(self) -> int:
        return int(self._t.get_size())

    @property
    def is_const(self) -> bool:
        return bool(self._t.is_const_qualified())

    @property
    def is_volatile(self) -> bool:
        return bool(self._t.is_volatile_qualified())

    @property
    def is_restrict(self) -> bool:
        return bool(self._t.is_restrict_qualified())

    def named(self) -> CType:
        return CType(self._t.get_named_type(), self._files)

    def canonical(self) -> CType:
        return CType(self._t.get_canonical(), self._files)

    def pointee(self) -> CType:
        return CType(self._t.get_pointee(), self._files)

    def element(self) -> CType:
        return CType(self._t.get_array_element_type(), self._files)

    @property
    def count(self) -> int:
        return int(self._t.element_count)

    def declaration(self) -> Node:
        return Node(self._t.get_declaration(), self._files)

    def result(self) -> CType:
        return CType(self._t.get_result(), self._files)

    def params(self) -> list[CType]:
        return [CType(a, self._files) for a in self._t.argument_types()]

    def fields(self) -> list[Node]:
        return [Node(f, self._files) for f in self._t.get_fields()]


@functools.cache
def _kind_names() -> dict[int, str]:
    """CursorKind value -> name: cindex's ``cursor.kind.name`` costs a class lookup and a
    property per call, and vmlinux.h's parse has ~17k top-level cursors, each asked."""
    ci = _cindex()
    return {k.value: name for name, k in vars(ci.CursorKind).items()
            if isinstance(k, ci.CursorKind)}


@functools.cache
def _visit() -> Any:
    """A clang_visitChildren callback collecting the children into its ``data`` list.

    cindex's own compares every child with the null cursor (two libclang calls each),
    which clang never passes: a visitor sees only real children.
    """
    ci = _cindex()

    def visitor(child: Any, _parent: Any, out: list[Any]) -> int:
        out.append(child)
        return 1  # CXChildVisit_Continue

    return ci.callbacks["cursor_visit"](visitor)


class Node:
    """A clang cursor: declarations, statements and expressions alike."""

    __slots__ = ("_c", "_files", "_kind")

    def __init__(self, c: Any, files: _Files) -> None:
        self._c = c
        self._files = files
        self._kind: str | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and bool(self._c == other._c)

    def __hash__(self) -> int:
        return int(self._c.hash)

    @property
    def kind(self) -> str:
        kind = self._kind
        if kind is None:
            # the cursor's own field: no libclang call (an unknown value: cindex's error)
            kind = _kind_names().get(self._c._kind_id) or str(self._c.kind.name)
            self._kind = kind
        return kind

    @property
    def spelling(self) -> str:
        return str(self._c.spelling)

    @property
    def loc(self) -> Loc:
        return _loc(self._c.location, self._files)

    @property
    def in_system_header(self) -> bool:
        return bool(self._c.location.is_in_system_header)

    @property
    def is_definition(self) -> bool:
        return bool(self._c.is_definition())

    @property
    def is_anonymous(self) -> bool:
        return bool(self._c.is_anonymous())

    @property
    def tag(self) -> str:
        """The tag of a struct/union/enum decl, "" when anonymous (even if a typedef names it)."""
        if self.is_anonymous:
            return ""
        # clang spells `typedef struct {...} t;` as plain "t"; a real tag prints as "struct t".
        spelled = self.type.spelling
        return self.spelling if spelled.startswith(("struct ", "union ", "enum ")) else ""

    @property
    def is_bitfield(self) -> bool:
        return bool(self._c.is_bitfield())

    @property
    def bitfield_width(self) -> int:
        return int(self._c.get_bitfield_width())

    @property
    def field_offset(self) -> int:
        """Bit offset of a FIELD_DECL within its record (anonymous members included)."""
        return int(self._c.get_field_offsetof())

    @property
    def type(self) -> CType:
        return CType(self._c.type, self._files)

    @property
    def result_type(self) -> CType:
        return CType(self._c.result_type, self._files)

    @property
    def underlying(self) -> CType:
        return CType(self._c.underlying_typedef_type, self._files)

    @property
    def enum_int_type(self) -> CType:
        return CType(self._c.enum_type, self._files)

    @property
    def enum_value(self) -> int:
        return int(self._c.enum_value)

    @property
    def usr(self) -> str:
        return str(self._c.get_usr())

    def children(self) -> list[Node]:
        found: list[Any] = []
        _cindex().conf.lib.clang_visitChildren(self._c, _visit(), found)
        tu, files = getattr(self._c, "_tu", None), self._files
        out = []
        for c in found:
            c._tu = tu  # as cindex does: the unit outlives every cursor taken from it
            out.append(Node(c, files))
        return out

    def arguments(self) -> list[Node]:
        return [Node(a, self._files) for a in self._c.get_arguments()]

    def referenced(self) -> Node | None:
        r = self._c.referenced
        return Node(r, self._files) if r is not None else None

    def semantic_parent(self) -> Node | None:
        p = self._c.semantic_parent
        return Node(p, self._files) if p is not None else None

    def definition(self) -> Node | None:
        d = self._c.get_definition()
        return Node(d, self._files) if d is not None else None


_ERROR = 3  # CXDiagnostic_Error; Fatal is 4


class TranslationUnit:
    __slots__ = ("_files", "_tu", "root")

    def __init__(self, tu: Any, files: _Files) -> None:
        self._tu = tu
        self._files = files
        self.root = Node(tu.cursor, files)

    def errors(self) -> list[tuple[Loc, str]]:
        return [(_loc(d.location, self._files), str(d.spelling))
                for d in self._tu.diagnostics if d.severity >= _ERROR]


def parse(
    source: Path, cflags: Sequence[str], *, byteorder: str = "little", cc: str = "clang"
) -> TranslationUnit:
    """Parse ``source`` as the compile sees it; clang errors become a ``SourceError``.

    The target follows the object's byte order: headers test __BYTE_ORDER__ and may define
    a struct differently for each.
    """
    if not source.is_file():
        raise SourceError("no such file", where=str(source))
    ci = _cindex()
    target = "bpfeb" if byteorder == "big" else "bpfel"
    real = source.resolve()
    # the compile runs in the source's directory, so relative paths in cflags (-I include)
    # start there; the parse must find the same headers
    args = ["-target", target, "-working-directory", str(real.parent), *BASE_FLAGS,
            *_parse_flags(cflags), *multiarch_include_flags(cc)]
    builtin = system_clang(cc).include
    if builtin:
        # libclang from the wheel looks for stddef.h & co next to itself, where the wheel
        # ships none; -resource-dir is ignored through this API, so add clang's dir instead.
        args += ["-isystem", builtin]
    args.append("-w")  # only errors matter here; -Werror in user flags must not fail us
    try:
        tu = ci.Index.create().parse(str(real), args=args, options=0)
    except ci.TranslationUnitLoadError as e:
        raise SourceError(f"libclang cannot parse it: {e}", where=str(source)) from e
    except ci.LibclangError as e:  # pragma: no cover - broken install
        raise SourceError(f"libclang cannot be loaded: {e}", where=str(source)) from e
    unit = TranslationUnit(tu, _Files(source, str(real)))
    errors = unit.errors()
    if errors:
        loc, message = errors[0]
        extra = len(errors) - 1
        more = f" (and {extra} more error{'s' if extra > 1 else ''})" if extra else ""
        if builtin is None and message.endswith("file not found"):
            more += ("; clang's own headers (stddef.h, stdbool.h, ...) were not found: "
                     "install clang, or put the clang that compiles on PATH")
        raise SourceError(f"error: {message}{more}", where=str(loc))
    return unit


def _parse_flags(cflags: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for f in cflags:
        if skip:
            skip = False
        elif f in _DROP_WITH_ARG:
            skip = True
        elif f not in _DROP_FLAGS:
            out.append(f)
    return out


@dataclass(frozen=True)
class SystemClang:
    include: str | None  # clang's builtin headers (stddef.h, stdint.h, ...)
    major: int  # the version that compiles the object; 0 when unknown


@functools.lru_cache(maxsize=4)
def system_clang(cc: str = "clang") -> SystemClang:
    """The clang that compiles (``--cc``), found through its resource dir."""
    res: Path | None = None
    clang = shutil.which(cc)
    if clang:
        try:
            proc = subprocess.run(
                [clang, "-print-resource-dir"], capture_output=True, text=True, timeout=10,
            )
            if proc.returncode == 0:
                res = Path(proc.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    if res is None or not (res / "include" / "stddef.h").is_file():
        found = sorted(glob.glob("/usr/lib/llvm-*/lib/clang/*/include/stddef.h"))
        res = Path(found[-1]).parent.parent if found else None
    if res is None:
        return SystemClang(None, 0)
    major = res.name.split(".")[0]  # .../lib/clang/14.0.6 or .../lib/clang/18
    return SystemClang(str(res / "include"), int(major) if major.isdigit() else 0)


