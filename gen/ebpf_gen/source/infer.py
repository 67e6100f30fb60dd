"""Which struct each event map carries: one walk over the program's function bodies.

Every call of an output helper (``bpf_perf_event_output(ctx, &map, flags, &data, size)``,
``bpf_ringbuf_output``) and every ``bpf_ringbuf_reserve`` whose result lands in a typed
pointer is a ``Send`` of a record to a map. A map handed to a helper function is followed
back through the callers' arguments (``maps_of``), so a send inside ``submit(void *ring)``
counts for every map passed as ``ring``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._clang import CType, Loc, Node, TranslationUnit

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
class MapRef:
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
    def short(self) -> str:
        return self.display.split(" ", 1)[-1]


@dataclass(frozen=True)
class Send:
    map: MapRef
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


def _desugar(t: CType) -> CType:
    """One level of spelling removed: `struct x` to x, a typedef name to what it names."""
    return t.named() if t.kind == "ELABORATED" else t.declaration().underlying


def _record_of(t: CType) -> Record | None:
    typedef = ""  # the outermost typedef names an anonymous record
    while t.kind in ("ELABORATED", "TYPEDEF"):
        if t.kind == "TYPEDEF" and not typedef:
            typedef = t.declaration().spelling
        t = _desugar(t)
    c = t.canonical()
    if c.kind != "RECORD":
        return None
    decl = c.declaration()
    is_union = decl.kind == "UNION_DECL"
    tag = decl.tag
    if tag:
        return Record(decl, f"{'union' if is_union else 'struct'} {tag}", "", is_union)
    if typedef:
        return Record(decl, typedef, typedef, is_union)
    return Record(decl, decl.type.spelling, "", is_union)


def _pointee_record(types: Sequence[CType]) -> tuple[Record | None, str]:
    """The first pointer-to-record among ``types`` (innermost first), and what was passed."""
    for t in types:
        if t.canonical().kind == "POINTER":
            rec = _record_of(_pointee(t))
            if rec is not None:
                return rec, t.spelling
    return None, types[0].spelling


def _pointee(t: CType) -> CType:
    """What a pointer type points at, keeping the typedef that may name an anonymous record."""
    while t.kind in ("ELABORATED", "TYPEDEF"):
        t = _desugar(t)
    # other sugar (attributes, parentheses) hides no name worth keeping
    return t.pointee() if t.kind == "POINTER" else t.canonical().pointee()


class Inference:
    """One walk over the function bodies of the program (not of system headers)."""

    def __init__(self, unit: TranslationUnit) -> None:
        self.sends: list[Send] = []
        # (callee USR, parameter index) -> map refs passed there
        self.bindings: dict[tuple[str, int], list[MapRef]] = {}
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
        self.sends.append(Send(ref, rec, what, _RESERVE, call.loc))

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
            self.sends.append(Send(ref, rec, what, name, call.loc))
        elif name == _RESERVE:
            if call not in handled and args:
                ref = self._map_ref(args[0], usr, params)
                if ref is not None:
                    self.sends.append(Send(ref, None, "void *", name, call.loc))
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
    def _map_ref(expr: Node, usr: str, params: dict[Node, int]) -> MapRef | None:
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
            return MapRef(function=usr, index=params[target])
        if target.kind == "VAR_DECL":
            parent = target.semantic_parent()
            if parent is not None and parent.kind == "TRANSLATION_UNIT":
                return MapRef(name=target.spelling)
        return None

    def maps_of(self, ref: MapRef, depth: int = 0) -> set[str]:
        """The global maps a reference can stand for, through helper-function parameters."""
        if ref.name:
            return {ref.name}
        if depth > 16:  # recursion is rare in BPF; never loop on it
            return set()
        out: set[str] = set()
        for caller_ref in self.bindings.get((ref.function, ref.index), []):
            out |= self.maps_of(caller_ref, depth + 1)
        return out


