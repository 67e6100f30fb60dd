"""C source analysis with libclang: what a perf/ring buffer carries, and structs BTF lacks.

clang puts a type in BTF only when a map, global variable or function signature uses it. A
struct that is only ever a local handed to ``bpf_perf_event_output()`` (the classic
``struct data_t``) never reaches BTF, so the object alone cannot type its events (cilium/ebpf
issue 1747). This module parses the same source with the same flags, follows the output
helpers to the maps they feed, and lays out the missing structs from clang's own record
layout, appending them to the model's BTF so the formatter cannot tell them apart.

Layers: a typed adapter over ``clang.cindex`` (the only place ``Any`` lives), inference of
event types from helper calls, synthesis of BTF types, and ``analyze`` tying them together.
"""

from __future__ import annotations

import functools
import glob
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .btf.types import (
    Array,
    Enum,
    EnumValue,
    Float,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Member,
    Param,
    Ptr,
    Qualifier,
    Spec,
    Struct,
    Type,
    Typedef,
    Union_,
)
from .errors import SourceError
from .model import EVENT_MAP_TYPES, Diagnostic, MapDef, ObjectModel

__all__ = ["analyze", "synthesize"]


# The flags bpf2go-style compiles use; the parse must see the same macros and headers or
# a struct's layout (and which #if branch defines it) could differ from the object's.
BASE_FLAGS = (
    "-O2",  # defines __OPTIMIZE__, which some headers test
    "-g",
    "-D__TARGET_ARCH_x86",  # bpf_tracing.h picks PT_REGS_* by it
    "-I/usr/include/x86_64-linux-gnu",  # asm/types.h on Debian
)
# Compile-only flags that make no sense (or take an argument) for a parse.
_DROP_FLAGS = frozenset({"-c", "-S", "-emit-llvm", "-MD", "-MMD", "-MP"})
_DROP_WITH_ARG = frozenset({"-o", "-MF", "-MT", "-MQ"})


# --- adapter over clang.cindex ------------------------------------------------------------
# clang.cindex ships no types; everything untyped stays between here and the next rule.

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


class CType:
    """A clang type, with only the questions this module asks of it."""

    __slots__ = ("_t",)

    def __init__(self, t: Any) -> None:
        self._t = t

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
        return CType(self._t.get_named_type())

    def canonical(self) -> CType:
        return CType(self._t.get_canonical())

    def pointee(self) -> CType:
        return CType(self._t.get_pointee())

    def element(self) -> CType:
        return CType(self._t.get_array_element_type())

    @property
    def count(self) -> int:
        return int(self._t.element_count)

    def declaration(self) -> Node:
        return Node(self._t.get_declaration())

    def result(self) -> CType:
        return CType(self._t.get_result())

    def params(self) -> list[CType]:
        return [CType(a) for a in self._t.argument_types()]

    def fields(self) -> list[Node]:
        return [Node(f) for f in self._t.get_fields()]


class Node:
    """A clang cursor: declarations, statements and expressions alike."""

    __slots__ = ("_c",)

    def __init__(self, c: Any) -> None:
        self._c = c

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and bool(self._c == other._c)

    def __hash__(self) -> int:
        return int(self._c.hash)

    @property
    def kind(self) -> str:
        return str(self._c.kind.name)

    @property
    def spelling(self) -> str:
        return str(self._c.spelling)

    @property
    def loc(self) -> Loc:
        loc = self._c.location
        return Loc(loc.file.name if loc.file else "", int(loc.line), int(loc.column))

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
        return CType(self._c.type)

    @property
    def result_type(self) -> CType:
        return CType(self._c.result_type)

    @property
    def underlying(self) -> CType:
        return CType(self._c.underlying_typedef_type)

    @property
    def enum_int_type(self) -> CType:
        return CType(self._c.enum_type)

    @property
    def enum_value(self) -> int:
        return int(self._c.enum_value)

    @property
    def usr(self) -> str:
        return str(self._c.get_usr())

    def children(self) -> list[Node]:
        return [Node(c) for c in self._c.get_children()]

    def arguments(self) -> list[Node]:
        return [Node(a) for a in self._c.get_arguments()]

    def referenced(self) -> Node | None:
        r = self._c.referenced
        return Node(r) if r is not None else None

    def semantic_parent(self) -> Node | None:
        p = self._c.semantic_parent
        return Node(p) if p is not None else None

    def definition(self) -> Node | None:
        d = self._c.get_definition()
        return Node(d) if d is not None else None


@dataclass(frozen=True)
class ClangDiagnostic:
    loc: Loc
    severity: int  # 3 error, 4 fatal (CXDiagnosticSeverity)
    message: str


class TranslationUnit:
    __slots__ = ("_tu", "root")

    def __init__(self, tu: Any) -> None:
        self._tu = tu
        self.root = Node(tu.cursor)

    def errors(self) -> list[ClangDiagnostic]:
        out = []
        for d in self._tu.diagnostics:
            if d.severity >= 3:
                loc = d.location
                out.append(ClangDiagnostic(
                    Loc(loc.file.name if loc.file else "", int(loc.line), int(loc.column)),
                    int(d.severity), str(d.spelling),
                ))
        return out


def parse(source: Path, cflags: Sequence[str], *, byteorder: str = "little") -> TranslationUnit:
    """Parse ``source`` as the compile sees it; clang errors become a ``SourceError``.

    The target follows the object's byte order: headers test __BYTE_ORDER__ and may define
    a struct differently for each.
    """
    if not source.is_file():
        raise SourceError("no such file", where=str(source))
    ci = _cindex()
    target = "bpfeb" if byteorder == "big" else "bpfel"
    args = ["-target", target, *BASE_FLAGS, *_parse_flags(cflags)]
    builtin = _system_clang().include
    if builtin:
        # libclang from the wheel looks for stddef.h & co next to itself, where the wheel
        # ships none; -resource-dir is ignored through this API, so add clang's dir instead.
        args += ["-isystem", builtin]
    args.append("-w")  # only errors matter here; -Werror in user flags must not fail us
    try:
        tu = ci.Index.create().parse(str(source), args=args, options=0)
    except ci.TranslationUnitLoadError as e:
        raise SourceError(f"libclang cannot parse it: {e}", where=str(source)) from e
    except ci.LibclangError as e:  # pragma: no cover - broken install
        raise SourceError(f"libclang cannot be loaded: {e}", where=str(source)) from e
    unit = TranslationUnit(tu)
    errors = unit.errors()
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise SourceError(f"error: {first.message}{more}", where=str(first.loc))
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
class _Clang:
    include: str | None  # clang's builtin headers (stddef.h, stdint.h, ...)
    major: int  # the version that compiles the object; 0 when unknown


@functools.lru_cache(maxsize=1)
def _system_clang() -> _Clang:
    """The clang on PATH (the one that compiles), found through its resource dir."""
    res: Path | None = None
    clang = shutil.which("clang")
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
        return _Clang(None, 0)
    major = res.name.split(".")[0]  # .../lib/clang/14.0.6 or .../lib/clang/18
    return _Clang(str(res / "include"), int(major) if major.isdigit() else 0)


# --- inference: which type each event map carries -----------------------------------------

# helper -> (index of the map argument, index of the data argument)
_OUTPUT_HELPERS = {
    "bpf_perf_event_output": (1, 3),
    "bpf_skb_output": (1, 3),
    "bpf_xdp_output": (1, 3),
    "bpf_ringbuf_output": (0, 1),
}
_RESERVE = "bpf_ringbuf_reserve"
_TYPE_DECLS = frozenset({"STRUCT_DECL", "UNION_DECL", "ENUM_DECL", "TYPEDEF_DECL"})
# Nodes that only convert or parenthesise: the type we want is underneath.
_TRANSPARENT = frozenset({"UNEXPOSED_EXPR", "PAREN_EXPR", "CSTYLE_CAST_EXPR"})


@dataclass(frozen=True)
class _MapRef:
    """A map argument: a global (``&output``) or a parameter of a helper function."""

    name: str = ""
    function: str = ""  # USR of the function whose parameter it is
    index: int = -1


@dataclass(frozen=True)
class Record:
    """A struct/union the program sends, as the source spells it."""

    decl: Node
    display: str  # "struct data_t", or the typedef name of an anonymous struct
    typedef: str  # the typedef naming an anonymous record, "" otherwise
    is_union: bool

    @property
    def key(self) -> Loc:
        return self.decl.loc

    @property
    def short(self) -> str:
        return self.display.split(" ", 1)[-1]


@dataclass(frozen=True)
class _Send:
    map: _MapRef
    record: Record | None
    what: str  # the C type actually passed, for messages
    helper: str
    loc: Loc


def _strip(e: Node) -> tuple[Node, list[CType]]:
    """Peel casts and parentheses; also return the types seen on the way, outermost first."""
    seen: list[CType] = []
    while e.kind in _TRANSPARENT:
        kids = [k for k in e.children() if k.kind != "TYPE_REF"]
        if len(kids) != 1:
            break
        seen.append(e.type)
        e = kids[0]
    return e, seen


def _record_of(t: CType) -> Record | None:
    typedef = ""
    while t.kind in ("ELABORATED", "TYPEDEF"):
        if t.kind == "TYPEDEF" and not typedef:
            typedef = t.declaration().spelling
        t = t.named() if t.kind == "ELABORATED" else t.declaration().underlying
    c = t.canonical()
    if c.kind != "RECORD":
        return None
    decl = c.declaration()
    is_union = decl.kind == "UNION_DECL"
    tag = _tag_name(decl)
    if tag:
        return Record(decl, f"{'union' if is_union else 'struct'} {tag}", "", is_union)
    if typedef:
        return Record(decl, typedef, typedef, is_union)
    return Record(decl, decl.type.spelling, "", is_union)


def _tag_name(decl: Node) -> str:
    """The tag of a struct/union/enum decl, "" when anonymous (even if a typedef names it)."""
    if decl.is_anonymous:
        return ""
    # clang spells `typedef struct {...} t;` as plain "t"; a real tag prints as "struct t".
    spelled = decl.type.spelling
    return decl.spelling if spelled.startswith(("struct ", "union ", "enum ")) else ""


def _pointee_record(types: Sequence[CType]) -> tuple[Record | None, str]:
    """The first pointer-to-record among ``types`` (innermost first), and what was passed."""
    what = types[0].spelling if types else "?"
    for t in types:
        c = t.canonical()
        if c.kind == "POINTER":
            rec = _record_of(_pointee(t))
            if rec is not None:
                return rec, t.spelling
    return None, what


def _pointee(t: CType) -> CType:
    while t.kind in ("ELABORATED", "TYPEDEF"):
        t = t.named() if t.kind == "ELABORATED" else t.declaration().underlying
    return t.pointee() if t.kind == "POINTER" else t.canonical().pointee()


class _Inference:
    """One walk over the function bodies of the program (not of system headers)."""

    def __init__(self, unit: TranslationUnit) -> None:
        self.sends: list[_Send] = []
        # (callee USR, parameter index) -> map refs passed there
        self.bindings: dict[tuple[str, int], list[_MapRef]] = {}
        self.map_decls: dict[str, Loc] = {}
        # type declarations, looked up by name only for --type (vmlinux.h has ~15k of them)
        self.decls: list[Node] = []
        for top in unit.root.children():
            kind = top.kind
            if kind in _TYPE_DECLS:
                self.decls.append(top)
            elif kind == "FUNCTION_DECL":
                if top.is_definition and not top.in_system_header:
                    self._function(top)
            elif kind == "VAR_DECL" and not top.in_system_header:
                self.map_decls.setdefault(top.spelling, top.loc)
        # the walk pops siblings in reverse; messages should follow the source
        self.sends.sort(key=lambda s: (s.loc.file, s.loc.line, s.loc.column))

    def _function(self, fn: Node) -> None:
        usr = fn.usr
        params = {p: i for i, p in enumerate(fn.arguments())}
        handled: set[Node] = set()
        stack = fn.children()
        while stack:
            node = stack.pop()
            kind = node.kind
            if kind == "VAR_DECL":
                kids = node.children()
                if kids:
                    self._reserve_into(node.type, kids[-1], usr, params, handled)
            elif kind == "BINARY_OPERATOR":
                kids = node.children()
                if len(kids) == 2 and kids[0].type.canonical().kind == "POINTER":
                    self._reserve_into(kids[0].type, kids[1], usr, params, handled)
            elif kind == "RETURN_STMT":
                kids = node.children()
                if kids:
                    self._reserve_into(fn.result_type, kids[0], usr, params, handled)
            elif kind == "CALL_EXPR":
                self._call(node, usr, params, handled)
            stack.extend(node.children())

    def _reserve_into(self, target: CType, expr: Node, usr: str, params: dict[Node, int],
                      handled: set[Node]) -> None:
        call, casts = _strip(expr)
        if call.kind != "CALL_EXPR" or call.spelling != _RESERVE:
            return
        args = call.arguments()
        ref = self._map_ref(args[0], usr, params) if args else None
        handled.add(call)
        if ref is None:
            return
        # an explicit cast on the call wins over the variable it lands in (innermost first)
        rec, what = _pointee_record([*reversed(casts), target])
        self.sends.append(_Send(ref, rec, what, _RESERVE, call.loc))

    def _call(self, call: Node, usr: str, params: dict[Node, int], handled: set[Node]) -> None:
        name = call.spelling
        args = call.arguments()
        if name in _OUTPUT_HELPERS:
            mi, di = _OUTPUT_HELPERS[name]
            if len(args) <= max(mi, di):
                return
            ref = self._map_ref(args[mi], usr, params)
            if ref is None:
                return
            inner, casts = _strip(args[di])
            rec, what = _pointee_record([inner.type, *reversed(casts)])
            self.sends.append(_Send(ref, rec, what, name, call.loc))
        elif name == _RESERVE:
            if call not in handled and args:
                ref = self._map_ref(args[0], usr, params)
                if ref is not None:
                    self.sends.append(_Send(ref, None, "void *", name, call.loc))
        else:
            callee = call.referenced()
            if callee is None or callee.kind != "FUNCTION_DECL":
                return
            cusr = callee.usr
            for i, a in enumerate(args):
                ref = self._map_ref(a, usr, params)
                if ref is not None:
                    self.bindings.setdefault((cusr, i), []).append(ref)

    @staticmethod
    def _map_ref(expr: Node, usr: str, params: dict[Node, int]) -> _MapRef | None:
        e, _ = _strip(expr)
        if e.kind == "UNARY_OPERATOR":
            kids = e.children()
            if len(kids) != 1:
                return None
            e, _ = _strip(kids[0])
        if e.kind != "DECL_REF_EXPR":
            return None
        target = e.referenced()
        if target is None:
            return None
        if target.kind == "PARM_DECL" and target in params:
            return _MapRef(function=usr, index=params[target])
        if target.kind == "VAR_DECL":
            parent = target.semantic_parent()
            if parent is not None and parent.kind == "TRANSLATION_UNIT":
                return _MapRef(name=target.spelling)
        return None

    def maps_of(self, ref: _MapRef, depth: int = 0) -> set[str]:
        """The global maps a reference can stand for, through helper-function parameters."""
        if ref.name:
            return {ref.name}
        if depth > 16:  # recursion is rare in BPF; never loop on it
            return set()
        out: set[str] = set()
        for caller_ref in self.bindings.get((ref.function, ref.index), []):
            out |= self.maps_of(caller_ref, depth + 1)
        return out


# --- synthesis: clang record layout -> BTF types ------------------------------------------

_INT_KINDS: dict[str, tuple[str, IntEncoding]] = {
    "CHAR_S": ("char", IntEncoding.SIGNED),
    "CHAR_U": ("char", IntEncoding.NONE),
    "SCHAR": ("signed char", IntEncoding.SIGNED),
    "UCHAR": ("unsigned char", IntEncoding.NONE),
    "SHORT": ("short", IntEncoding.SIGNED),
    "USHORT": ("unsigned short", IntEncoding.NONE),
    "INT": ("int", IntEncoding.SIGNED),
    "UINT": ("unsigned int", IntEncoding.NONE),
    "LONG": ("long", IntEncoding.SIGNED),
    "ULONG": ("unsigned long", IntEncoding.NONE),
    "LONGLONG": ("long long", IntEncoding.SIGNED),
    "ULONGLONG": ("unsigned long long", IntEncoding.NONE),
    "INT128": ("__int128", IntEncoding.SIGNED),
    "UINT128": ("unsigned __int128", IntEncoding.NONE),
    "BOOL": ("_Bool", IntEncoding.BOOL),
}
_FLOAT_KINDS = {"FLOAT": "float", "DOUBLE": "double", "LONGDOUBLE": "long double"}
_SIGNED_INT_KINDS = frozenset(k for k, (_, enc) in _INT_KINDS.items() if enc & IntEncoding.SIGNED)


class _Builder:
    """Appends types to a BTF spec, reusing what it already holds where names match.

    Ids are handed out before a record's members are built, so a struct that points at
    itself refers to its own fresh id.
    """

    def __init__(self, btf: Spec, where_of: dict[int, str]) -> None:
        self.btf = btf
        self.new: list[Type | None] = []
        self.where_of = where_of  # id -> "file:line" of synthesised named types
        self._named: dict[tuple[Kind, str], int] = {}
        self._ints: dict[tuple[str, int, IntEncoding], int] = {}
        for t in btf.types:
            if isinstance(t, Int):
                self._ints.setdefault((t.name, t.size, t.encoding), t.id)
            elif t.name and t.kind in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.TYPEDEF,
                                       Kind.FWD, Kind.FLOAT):
                self._named.setdefault((t.kind, t.name), t.id)
        self._cache: dict[object, int] = {}
        self._records: dict[Loc, int] = {}

    def spec(self) -> Spec:
        assert all(t is not None for t in self.new)
        return Spec(types=(*self.btf.types, *(t for t in self.new if t is not None)),
                    byteorder=self.btf.byteorder)

    def _reserve(self) -> int:
        self.new.append(None)
        return len(self.btf.types) + len(self.new) - 1

    def _set(self, tid: int, t: Type) -> int:
        self.new[tid - len(self.btf.types)] = t
        return tid

    def _add(self, key: object, make: Callable[[int], Type]) -> int:
        tid = self._cache.get(key)
        if tid is None:
            tid = self._reserve()
            self._cache[key] = tid
            self._set(tid, make(tid))
        return tid

    def existing(self, kind: Kind, name: str, size: int) -> int | None:
        tid = self._named.get((kind, name))
        if tid is None:
            return None
        try:
            return tid if self.btf.sizeof(tid) == size else None
        except ValueError:
            return None

    def type_id(self, t: CType, where: str) -> int:
        base = self._unqualified(t, where)
        # clang writes `const volatile T` as CONST -> VOLATILE -> T
        for on, kind in ((t.is_restrict, Kind.RESTRICT), (t.is_volatile, Kind.VOLATILE),
                         (t.is_const, Kind.CONST)):
            if on:
                base = self._qualifier(kind, base)
        return base

    def _qualifier(self, kind: Kind, inner: int) -> int:
        return self._add(("q", kind, inner), lambda i: Qualifier(i, "", inner, kind))

    def _unqualified(self, t: CType, where: str) -> int:
        kind = t.kind
        if kind == "ELABORATED":
            return self.type_id(t.named(), where)
        if kind == "VOID":
            return 0
        if kind in _INT_KINDS:
            name, enc = _INT_KINDS[kind]
            size = t.size
            known = self._ints.get((name, size, enc))
            if known is not None:
                return known
            return self._add(("int", name, size, enc),
                             lambda i: Int(i, name, size, enc, 0, size * 8))
        if kind in _FLOAT_KINDS:
            fname, size = _FLOAT_KINDS[kind], t.size
            known = self.existing(Kind.FLOAT, fname, size)
            return known if known is not None else self._add(
                ("float", fname), lambda i: Float(i, fname, size))
        if kind == "TYPEDEF":
            return self._typedef(t.declaration(), where)
        if kind == "RECORD":
            return self.record(t.declaration(), force=False)
        if kind == "ENUM":
            return self._enum(t.declaration())
        if kind == "POINTER":
            target = self._pointer_target(t.pointee(), where)
            return self._add(("ptr", target), lambda i: Ptr(i, "", target))
        if kind in ("CONSTANTARRAY", "INCOMPLETEARRAY"):
            elem = self.type_id(t.element(), where)
            n = t.count if kind == "CONSTANTARRAY" else 0
            index = self._array_index_type()
            return self._add(("array", elem, n), lambda i: Array(i, "", elem, index, n))
        raise SourceError(f"type '{t.spelling}' ({kind}) has no BTF equivalent", where=where)

    def _array_index_type(self) -> int:
        # clang's BTF indexes every array by this made-up int
        key = ("__ARRAY_SIZE_TYPE__", 4, IntEncoding.NONE)
        known = self._ints.get(key)
        if known is not None:
            return known
        return self._add(("int", *key),
                         lambda i: Int(i, "__ARRAY_SIZE_TYPE__", 4, IntEncoding.NONE, 0, 32))

    def _pointer_target(self, t: CType, where: str) -> int:
        """Pointers are u64 to user space: name their target without laying it out."""
        while t.kind == "ELABORATED":
            t = t.named()
        kind = t.kind
        if kind in ("FUNCTIONPROTO", "FUNCTIONNOPROTO"):
            ret = self._pointer_target(t.result(), where)
            params = tuple(Param("", self._pointer_target(p, where)) for p in t.params())
            return self._add(("proto", ret, params), lambda i: FuncProto(i, "", ret, params))
        if kind == "RECORD":
            decl = t.declaration()
            tag = _tag_name(decl)
            is_union = decl.kind == "UNION_DECL"
            if tag:
                size = t.size
                rkind = Kind.UNION if is_union else Kind.STRUCT
                known = self.existing(rkind, tag, size) if size > 0 else None
                if known is None and decl.loc in self._records:
                    return self._records[decl.loc]
                if known is not None:
                    return known
                fwd = self._named.get((Kind.FWD, tag))
                if fwd is not None:
                    return fwd
                return self._add(("fwd", tag, is_union), lambda i: Fwd(i, tag, is_union))
            return 0
        if kind == "TYPEDEF":
            name = t.declaration().spelling
            known = self._named.get((Kind.TYPEDEF, name))
            if known is not None:
                return known
            # only scalars behind typedefs are laid out; records stay forward declarations
            if t.canonical().kind == "RECORD":
                return self._pointer_target(t.canonical(), where)
        return self.type_id(t, where)

    def _typedef(self, decl: Node, where: str) -> int:
        name = decl.spelling
        under = decl.underlying
        size = under.canonical().size
        known = self.existing(Kind.TYPEDEF, name, size) if size > 0 else None
        if known is not None:
            return known
        key = ("typedef", decl.loc)
        if key in self._cache:
            return self._cache[key]
        tid = self._reserve()
        self._cache[key] = tid
        target = self.type_id(under, f"{where}: typedef {name}")
        return self._set(tid, Typedef(tid, name, target))

    def _enum(self, decl: Node) -> int:
        name = _tag_name(decl)
        size = decl.type.size
        if name:
            known = self.existing(Kind.ENUM, name, size)
            if known is not None:
                return known
        values = tuple(EnumValue(c.spelling, c.enum_value) for c in decl.children()
                       if c.kind == "ENUM_CONSTANT_DECL")
        # clang >= 15 marks an enum signed (BTF kind_flag) when its integer type is, which
        # in C means it has a negative value; clang 14 writes every value unsigned
        major = _system_clang().major
        signed = (major == 0 or major >= 15) and (
            decl.enum_int_type.canonical().kind in _SIGNED_INT_KINDS)
        if not signed:
            mask = (1 << (size * 8)) - 1
            values = tuple(EnumValue(v.name, v.value & mask) for v in values)
        kind = Kind.ENUM64 if size > 4 else Kind.ENUM
        loc = decl.loc

        def make(i: int) -> Enum:
            self.where_of[i] = f"{loc.file}:{loc.line}"
            return Enum(i, name, size, signed, values, kind)

        return self._add(("enum", loc), make)

    def record(self, decl: Node, *, force: bool) -> int:
        """The BTF id for a struct/union decl: reused by name unless ``force``."""
        loc = decl.loc
        if loc in self._records:
            return self._records[loc]
        is_union = decl.kind == "UNION_DECL"
        name = _tag_name(decl)
        size = decl.type.size
        what = f"{'union' if is_union else 'struct'} {name or decl.type.spelling}"
        if size < 0:
            raise SourceError(f"{what} is incomplete: no layout to take", where=str(loc))
        if name and not force:
            known = self.existing(Kind.UNION if is_union else Kind.STRUCT, name, size)
            if known is not None:
                return known
        tid = self._reserve()
        self._records[loc] = tid
        members: list[Member] = []
        for f in decl.type.fields():
            fname = f.spelling
            if f.is_bitfield and not fname:
                continue  # `int :0;` and friends: clang emits no member for them
            if not fname.isidentifier():
                fname = ""  # an anonymous struct/union member
            mwhere = f"{loc}: {what}.{fname or '(anonymous)'}"
            members.append(Member(
                name=fname,
                type=self.type_id(f.type, mwhere),
                bit_offset=f.field_offset,
                bitfield_size=f.bitfield_width if f.is_bitfield else 0,
            ))
        if name:
            self.where_of[tid] = f"{loc.file}:{loc.line}"
        cls = Union_ if is_union else Struct
        return self._set(tid, cls(tid, name, size, tuple(members)))

    def for_record(self, rec: Record, *, force: bool = False) -> int:
        """The id user space should see for ``rec``: the typedef for an anonymous record."""
        if rec.typedef:
            tid = self._named.get((Kind.TYPEDEF, rec.typedef))
            if tid is not None and not force:
                t = self.btf.resolve(tid)
                if isinstance(t, (Struct, Union_)) and t.size == rec.decl.type.size:
                    return tid
            target = self.record(rec.decl, force=force)
            loc = rec.key

            def make(i: int) -> Typedef:
                self.where_of[i] = f"{loc.file}:{loc.line}"
                return Typedef(i, rec.typedef, target)

            return self._add(("typedef-of", loc), make)
        return self.record(rec.decl, force=force)


# --- putting it together ------------------------------------------------------------------

def analyze(source: Path, cflags: Sequence[str], model: ObjectModel,
            types: Sequence[str]) -> ObjectModel:
    """Type the model's event maps from ``source`` and add the structs BTF lacks."""
    if not _needs_source(model, types):
        return model  # the parse costs as much as a compile (vmlinux.h): skip it when idle
    unit = parse(source, cflags, byteorder=model.btf.byteorder)
    inf = _Inference(unit)
    where_of: dict[int, str] = {}
    builder = _Builder(model.btf, where_of)
    diags: list[Diagnostic] = []
    wanted = {_bare(t) for t in types}
    warned: dict[Loc, list[tuple[str, str]]] = {}  # not-in-BTF record -> (helper, map)
    records_by_key: dict[Loc, Record] = {}

    maps: list[MapDef] = []
    for m in model.maps:
        if m.map_type_name not in EVENT_MAP_TYPES or m.event_type is not None:
            maps.append(m)
            continue
        sends = [s for s in inf.sends if m.name in inf.maps_of(s.map)]
        typed: dict[Loc, list[_Send]] = {}
        for s in sends:
            if s.record is not None:
                typed.setdefault(s.record.key, []).append(s)
        map_loc = inf.map_decls.get(m.name, Loc(str(source), 0, 0))
        if len(typed) > 1:
            diags.append(_ambiguous(m, map_loc, typed))
            maps.append(m)
            continue
        if not typed:
            diags.append(_untyped(m, map_loc, sends))
            maps.append(m)
            continue
        first = next(iter(typed.values()))
        rec = first[0].record
        assert rec is not None
        before = len(builder.new)
        tid = builder.for_record(rec)
        if len(builder.new) > before and rec.short not in wanted and rec.display not in wanted:
            records_by_key[rec.key] = rec
            warned.setdefault(rec.key, []).extend((s.helper, m.name) for s in first)
        elif rec.key in warned:  # a later map reusing a struct synthesised for an earlier one
            warned[rec.key].extend((s.helper, m.name) for s in first)
        maps.append(replace(m, event_type=tid))

    for name in types:
        decl = _find_decl(inf, name)
        if decl is None:
            continue  # not in the source: the pipeline reports names found nowhere
        if decl.kind in ("TYPEDEF_DECL", "ENUM_DECL"):
            builder.type_id(decl.type, str(decl.loc))
        else:
            builder.record(decl, force=False)

    for key, uses in warned.items():
        diags.append(_not_in_btf(records_by_key[key], uses))
    diags.sort(key=lambda d: (d.file, d.line, d.column))

    if not builder.new:
        return replace(model, maps=tuple(maps),
                       diagnostics=(*model.diagnostics, *diags))
    return replace(
        model, btf=builder.spec(), maps=tuple(maps),
        source_types={**model.source_types, **where_of},
        diagnostics=(*model.diagnostics, *diags),
    )


def _needs_source(model: ObjectModel, types: Sequence[str]) -> bool:
    if any(m.map_type_name in EVENT_MAP_TYPES and m.event_type is None for m in model.maps):
        return True
    kinds = {"struct ": (Kind.STRUCT,), "union ": (Kind.UNION,), "enum ": (Kind.ENUM, Kind.ENUM64)}
    for name in types:
        want = next((k for p, k in kinds.items() if name.startswith(p)),
                    (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.TYPEDEF))
        if not model.btf.named(_bare(name), *want):
            return True
    return False


def synthesize(source: Path, cflags: Sequence[str], btf: Spec, name: str) -> tuple[Spec, int]:
    """Lay out the struct/union/typedef ``name`` from the source even when BTF has it.

    Returns the extended spec and the new type's id; members reuse BTF types by name. This
    is the check that source layout and clang's BTF agree.
    """
    unit = parse(source, cflags, byteorder=btf.byteorder)
    inf = _Inference(unit)
    decl = _find_decl(inf, name)
    if decl is None:
        raise SourceError(f"no struct, union or typedef '{name}' defined", where=str(source))
    builder = _Builder(btf, {})
    if decl.kind in ("STRUCT_DECL", "UNION_DECL"):
        tid = builder.record(decl, force=True)
    else:
        tid = builder.type_id(decl.type, str(decl.loc))
    return builder.spec(), tid


def _bare(name: str) -> str:
    return name.split(" ", 1)[1] if name.startswith(("struct ", "union ", "enum ")) else name


def _find_decl(inf: _Inference, name: str) -> Node | None:
    want = {"struct ": "STRUCT_DECL", "union ": "UNION_DECL", "enum ": "ENUM_DECL"}
    kind = next((k for p, k in want.items() if name.startswith(p)), None)
    bare = _bare(name)
    candidates = [
        d for d in inf.decls
        if d.spelling == bare and (d.kind == "TYPEDEF_DECL" or d.is_definition)
        and not d.in_system_header
    ]
    for c in candidates:
        if kind is not None:
            if c.kind == kind and _tag_name(c):
                return c
        elif c.kind == "TYPEDEF_DECL":
            return c
    if kind is None:  # a bare name: a tag will do when no typedef has it
        for c in candidates:
            if _tag_name(c):
                return c
    return None


def _uses(sends: Sequence[_Send]) -> Iterator[str]:
    for s in sends:
        yield f"{s.helper}() at {s.loc}"


def _not_in_btf(rec: Record, uses: list[tuple[str, str]]) -> Diagnostic:
    helpers = " and ".join(dict.fromkeys(f"{h}() on map '{m}'" for h, m in uses))
    ident = rec.short.replace(" ", "_")
    loc = rec.decl.loc
    return Diagnostic(
        loc.file, loc.line, loc.column, "warning",
        f"{rec.display} is not in BTF: clang emits only types that a map, global variable or "
        f"function signature uses, and it reaches user space only through {helpers}; its "
        "layout was taken from the source. To put it in BTF in a way libbpf loads, add an "
        f"unused global: `{rec.display} *unused_{ident} __attribute__((unused));` (a "
        "__type(value, ...) annotation on a perf event array or ring buffer does not load "
        f"with libbpf), or pass --type {rec.short} to silence this warning.",
    )


def _ambiguous(m: MapDef, loc: Loc, typed: dict[Loc, list[_Send]]) -> Diagnostic:
    kinds = []
    for sends in typed.values():
        rec = sends[0].record
        assert rec is not None
        kinds.append(f"{rec.display} ({', '.join(_uses(sends))})")
    return Diagnostic(
        loc.file, loc.line, loc.column, "warning",
        f"map '{m.name}' ({m.map_type_name}) is sent different types: {' and '.join(kinds)}; "
        "its events are read as bytes (send one type per map to type them)",
    )


def _untyped(m: MapDef, loc: Loc, sends: Sequence[_Send]) -> Diagnostic:
    if not sends:
        return Diagnostic(
            loc.file, loc.line, loc.column, "warning",
            f"cannot infer the event type of map '{m.name}' ({m.map_type_name}): no "
            "bpf_perf_event_output(), bpf_ringbuf_output() or bpf_ringbuf_reserve() in this "
            "source uses it; its events are read as bytes",
        )
    first = sends[0]
    where = "; ".join(f"{s.helper}() at {s.loc} gets '{s.what}'" for s in sends)
    return Diagnostic(
        first.loc.file, first.loc.line, first.loc.column, "warning",
        f"cannot infer the event type of map '{m.name}' ({m.map_type_name}): {where}; its "
        "events are read as bytes (pass a pointer to the struct, e.g. `&data` or a "
        "`struct event *`, to type them)",
    )
