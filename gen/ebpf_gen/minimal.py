"""The types BPF sources use from vmlinux.h: ``ebpf-gen vmlinux --for SOURCE``.

A minimal header defines a kernel type where the source needs it complete and only declares
it (``struct mm_struct;``) where the source merely points at it. Which is which is clang's
decision, so clang is asked rather than imitated:

1. The source is compiled (``-g``, BPF target) against the full header. clang's BTF defines
   in full every record the program needs a layout of: each one a CO-RE access walks
   (``BPF_CORE_READ(task, real_parent, tgid)`` or ``task->mm->pgd`` under
   ``preserve_access_index``: every struct along the path), each one a function signature
   or a global spells, and what those embed by value. A record reached only through a
   pointer is a ``FWD`` there. Those definitions, the typedefs and the enums of that BTF
   are the roots of the minimal header (``HeaderWriter.header(only=...)``), found by the
   names the full header gave them.
2. What a program uses without leaving a trace in BTF (an enumerator such as
   ``BPF_MAP_TYPE_RINGBUF``, ``sizeof(struct x)``, a local of a kernel type, a typedef only
   a cast spells) is found by compiling against the minimal header: clang's errors name the
   missing enumerator, incomplete type or unknown type name; each is added and the source
   compiled again, until it compiles. A tag the source first names in a parameter list
   (``BPF_PROG(f, struct filename *name)``) must be declared at file scope, or clang makes
   it a type of that function alone (and warns): those are declared, not defined.

The source is compiled from a temporary copy beside the generated header, so its
``#include "vmlinux.h"`` reads that header whatever lies beside the original; the original's
directory is searched next (``-iquote``) for its other headers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from .btf.decode import decode_btf
from .btf.types import Enum, Fwd, Spec, Struct, Typedef, Union_
from .cheader import HeaderWriter
from .compile import BPF_CFLAGS, INCLUDE_FLAGS, multiarch_include_flags
from .elf import parse_elf
from .errors import CompileError

# Compiles against the minimal header before giving up: each adds every type the errors of
# the previous one named; real tools settle in one or two.
MAX_ROUNDS = 8

_MISSING = re.compile(
    r"error: (?:"
    r"use of undeclared identifier '(?P<ident>\w+)'"
    r"|unknown type name '(?P<typename>\w+)'"
    r"|.*?incomplete (?:definition of )?type "
    r"'(?:const |volatile )*(?P<tag>(?:struct|union|enum) \w+)"
    r")"
)


def _compile(source: Path, header: str, work: Path, cc: str, cflags: Sequence[str],
             *, btf: bool) -> tuple[subprocess.CompletedProcess[str], Path, list[str]]:
    """Compile a copy of ``source`` beside ``header`` (written as vmlinux.h)."""
    (work / "vmlinux.h").write_text(header)
    copy = work / source.name
    shutil.copyfile(source, copy)
    obj = work / "out.o"
    cmd = [cc, *BPF_CFLAGS, "-target", "bpfel", *INCLUDE_FLAGS,
           "-iquote", str(source.resolve().parent), "-ferror-limit=0",
           *(("-c", "-o", str(obj)) if btf else ("-fsyntax-only",)), str(copy),
           *cflags, *multiarch_include_flags(cc)]
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise CompileError(f"{cc}: command not found", where=str(source)) from e
    return proc, obj, cmd


class _Index:
    """The full header's names back to type ids: tags, typedef names, enumerators."""

    def __init__(self, writer: HeaderWriter) -> None:
        names = writer.names
        self.tags: dict[str, int] = {}
        for t in (*names.records, *names.enums):
            if t.name:
                kw = "union" if type(t) is Union_ else "enum" if type(t) is Enum else "struct"
                self.tags.setdefault(f"{kw} {names.tag[t.id]}", t.id)
        self.typedefs = {names.ident[t.id]: t.id for t in names.typedefs if t.name}
        self.enumerators: dict[str, int] = {}
        for e in names.enums:
            for value in names.values[e.id]:
                self.enumerators.setdefault(value, e.id)


def _roots_of(obj: Spec, index: _Index) -> list[int]:
    """The kernel types a compiled program's BTF defines in full (FWDs: pointed at only)."""
    roots: list[int] = []
    for t in obj.types:
        if not t.name or type(t) is Fwd:
            continue
        if type(t) is Struct or type(t) is Union_ or type(t) is Enum:
            kw = "union" if type(t) is Union_ else "enum" if type(t) is Enum else "struct"
            tid = index.tags.get(f"{kw} {t.name}")
        elif type(t) is Typedef:
            tid = index.typedefs.get(t.name)
        else:
            continue
        if tid is not None:
            roots.append(tid)
    return roots


# A tag first named in a parameter list is scoped to that function: a type of its own,
# incompatible with the same tag anywhere else. clang warns; the tag is declared at file scope.
_INVISIBLE = re.compile(r"warning: declaration of '(?P<tag>(?:struct|union) \w+)' will not be "
                        r"visible outside of this function")


def _invisible(stderr: str, index: _Index) -> list[int]:
    return [tid for tid in map(index.tags.get, (m["tag"] for m in _INVISIBLE.finditer(stderr)))
            if tid is not None]


def _missing(stderr: str, index: _Index) -> list[int]:
    """The kernel types clang's errors say are missing (enumerators, typedefs, tags)."""
    found: list[int] = []
    for m in _MISSING.finditer(stderr):
        tid = (index.enumerators.get(m["ident"]) if m["ident"]
               else index.typedefs.get(m["typename"]) if m["typename"]
               else index.tags.get(m["tag"]))
        if tid is not None:
            found.append(tid)
    return found


def minimal_header(spec: Spec, sources: Iterable[Path], *, cc: str = "clang",
                   cflags: Sequence[str] = (), **header_kw: str) -> str:
    """The header of the types ``sources`` use, as described above."""
    full_writer = HeaderWriter(spec)
    full = full_writer.header(**header_kw)  # type: ignore[arg-type]
    index = _Index(full_writer)
    wanted: dict[int, None] = {}  # ordered: the header is the same for the same inputs
    sources = list(sources)
    with tempfile.TemporaryDirectory(prefix="ebpf-gen-vmlinux-") as tmp:
        work = Path(tmp)
        for src in sources:
            if not src.is_file():
                raise CompileError("no such source file", where=str(src))
            proc, obj, cmd = _compile(src, full, work, cc, cflags, btf=True)
            if proc.returncode != 0:
                raise CompileError(
                    f"does not compile against the full header: {' '.join(cmd)}\n"
                    f"{proc.stderr.rstrip()}", where=str(src))
            btf = parse_elf(obj.read_bytes(), str(src)).btf
            wanted.update(dict.fromkeys(_roots_of(decode_btf(btf, where=str(src)), index)))
        declared: dict[int, None] = {}
        for src in sources:
            for _ in range(MAX_ROUNDS):
                text = HeaderWriter(spec).header(only=sorted(wanted), declare=sorted(declared),
                                                 **header_kw)
                proc, _obj, cmd = _compile(src, text, work, cc, cflags, btf=False)
                undeclared = [t for t in _invisible(proc.stderr, index) if t not in declared]
                declared.update(dict.fromkeys(undeclared))
                if proc.returncode == 0:
                    if undeclared:
                        continue
                    break
                missing = [tid for tid in _missing(proc.stderr, index) if tid not in wanted]
                wanted.update(dict.fromkeys(missing))
                if not missing and not undeclared:  # an error adding kernel types does not cure
                    raise CompileError(
                        f"does not compile against the minimal header: {' '.join(cmd)}\n"
                        f"{proc.stderr.rstrip()}", where=str(src))
            else:
                raise CompileError(
                    f"still does not compile against the minimal header after {MAX_ROUNDS} "
                    f"rounds: {' '.join(cmd)}\n{proc.stderr.rstrip()}", where=str(src))
    return HeaderWriter(spec).header(only=sorted(wanted), declare=sorted(declared), **header_kw)
