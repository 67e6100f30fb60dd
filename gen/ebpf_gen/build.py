"""Compile one source for every byte order and architecture, in parallel, keeping one object
per byte order unless the code depends on the architecture.

``bpf_tracing.h``'s ``PT_REGS_*`` macros read registers at architecture-specific offsets
(``PT_REGS_PARM1`` is ``r1 + 112`` on x86, ``r1 + 0`` on arm64), so such a program needs an
object per architecture; most programs never touch ``pt_regs`` and compile to the same bytes
for every ``__TARGET_ARCH_*``. Which case a source is, is decided in two steps:

1. From the primary compile's inputs (its depfile): ``__TARGET_ARCH_*`` is only ever set on
   the command line, so only a file that spells it can depend on it. When those files are
   headers (``bpf_tracing.h``), each architecture preprocesses just them (``-E -dD``, a few
   milliseconds: no ``vmlinux.h``), and the macros whose definitions differ, with every macro
   reaching one of them, are the architecture-dependent names. A program none of whose other
   inputs names one (and that redefines nothing those headers test) compiles to the same
   bytes everywhere: one object per byte order, with no further clang run.
2. Otherwise every architecture preprocesses the whole source (a fraction of a compile, but
   with ``vmlinux.h`` about a third of one, seven times over by default), architectures
   whose preprocessed text is identical share one compile, and objects that still come out
   byte-identical are merged. An architecture whose compile fails (``BPF_KPROBE`` for arm64
   against x86's headers: no ``struct user_pt_regs``) gets no object, the others are
   recorded as architecture-specific, and the module refuses it.

Every step is a clang subprocess run from a thread pool (``jobs`` wide); results are
gathered in a fixed order, so the output is the same as a serial run's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .compile import BYTEORDER, CompileResult, compile_bpf
from .errors import CompileError, ConfigError
from .runtime.arch import ARCHES, DEFAULT_ARCHES, PRIMARY, object_key

T = TypeVar("T")
MAX_JOBS = 256
SUFFIX = {"little": "bpfel", "big": "bpfeb"}


def object_name(stem: str, order: str, arch: str | None = None) -> str:
    """The file an object is written to: ``STEM_bpfel.o`` for any architecture of that
    byte order, ``STEM_bpfel_x86.o`` for one architecture's."""
    return f"{stem}_{SUFFIX[order]}{f'_{arch}' if arch else ''}.o"


# bpf_tracing.h declares a CO-RE flavour of pt_regs for some architectures (pt_regs___arm64,
# pt_regs___s390; libbpf 1.5 adds pt_regs___riscv and marks each preserve_access_index)
# whether or not the program uses it, and forward-declares struct pt_regs for an architecture
# it does not know (loongarch in libbpf 1.1). Declared and unused, neither changes code nor
# BTF (clang emits only types in use); used, the macro expansions naming it differ anyway.
# Dropped from the comparison, so a program that never touches pt_regs costs one
# preprocessing per architecture rather than one compile each.
_UNUSED_FLAVOURS = re.compile(
    rb'^(?:# \d+ "[^"\n]*"[^\n]*\n)?struct pt_regs'
    rb'(?:___\w+ \{[^{}]*\}(?:[ \n]*__attribute__\(\([\w ]*\)\))?)?;\n', re.M)


def comparable(preprocessed: bytes) -> bytes:
    return _UNUSED_FLAVOURS.sub(b"", preprocessed)


# Only the command line defines __TARGET_ARCH_<arch> (compile.arch_flag): a file that never
# spells it cannot test it, and reaches the architecture only through macros of one that does.
_ARCH_MACRO = b"__TARGET_ARCH_"
_IDENT = re.compile(rb"[A-Za-z_]\w*")
_CONDITION = re.compile(rb"^[ \t]*#[ \t]*(?:if|ifdef|ifndef|elif|elifdef|elifndef)\b(.*)", re.M)
# a #define or #undef with its continuation lines
_DIRECTIVE = re.compile(rb"^[ \t]*#[ \t]*(define|undef)[ \t]+(\w+)(?:.*\\\n)*.*", re.M)


def _probe_parts(text: bytes) -> tuple[bytes, dict[bytes, tuple[bytes, frozenset[bytes]]]]:
    """The code and the macros of ``clang -E -dD`` output: code lines without line markers
    or blank lines, and each macro's last definition (clang prints one per line) with the
    identifiers its body uses (its own parameters left out: they are substituted)."""
    code: list[bytes] = []
    macros: dict[bytes, tuple[bytes, frozenset[bytes]]] = {}
    for line in text.split(b"\n"):
        if line.startswith(b"#define "):
            m = _IDENT.match(line, 8)
            if not m:
                continue
            rest = line[m.end():]
            params: set[bytes] = set()
            if rest.startswith(b"("):  # function-like: (a, b, ...) body
                close = rest.find(b")")
                params = set(_IDENT.findall(rest[:close])) | {b"__VA_ARGS__"}
                rest = rest[close + 1:]
            macros[m.group()] = (line[m.end():], frozenset(_IDENT.findall(rest)) - params)
        elif line.startswith(b"#undef "):
            m = _IDENT.match(line, 7)
            if m:
                macros.pop(m.group(), None)
        elif line.strip() and not line.startswith(b"# "):
            code.append(line)
    return b"\n".join(code) + b"\n", macros


def _prefixes(name: bytes) -> list[bytes]:
    # ``##`` builds names from a stem and a count: BPF_KPROBE passes ___bpf_kprobe_args on to
    # a paste making ___bpf_kprobe_args1, and PT_REGS_PARM ## n is PT_REGS_PARM1. A use of
    # the stem counts as a use of the name. (Shorter pieces would be matched by accident:
    # BPF_K, a macro of linux/bpf_common.h, begins BPF_KPROBE.)
    stem = name.rstrip(b"0123456789")
    return [name, stem] if stem != name and len(stem) >= 4 else [name]


def arch_dependent_names(probes: Sequence[bytes]) -> frozenset[bytes] | None:
    """The identifiers through which the architecture reaches a program, from one ``clang -E
    -dD`` of the same headers per architecture: the macros defined differently (or not at
    all) in some of them, every macro whose body uses one of those, and the stems that
    pastes build their names from (see _prefixes). None when the headers' code itself
    differs (beyond the unused pt_regs flavours comparable() ignores)."""
    parts = [_probe_parts(p) for p in probes]
    if len({comparable(code) for code, _ in parts}) > 1:
        return None
    names = {n for _, macros in parts for n in macros}
    dependent = {n for n in names
                 if len({m[0] if m else None for m in (ms.get(n) for _, ms in parts)}) > 1}
    uses: dict[bytes, set[bytes]] = {}
    for _, macros in parts:
        for n, (_, body_names) in macros.items():
            uses.setdefault(n, set()).update(body_names)
    reaching = {p for n in dependent for p in _prefixes(n)}
    grew = True
    while grew:  # the closure: BPF_KPROBE's text is the same everywhere, PT_REGS_PARM1's not
        grew = False
        for n, used in uses.items():
            if n not in dependent and not used.isdisjoint(reaching):
                dependent.add(n)
                reaching.update(_prefixes(n))
                grew = True
    return frozenset(reaching)


def arch_sensitive(texts: Mapping[Path, bytes]) -> list[Path]:
    """The inputs that spell ``__TARGET_ARCH_``: the only ones the architecture reaches."""
    return [p for p, t in texts.items() if _ARCH_MACRO in t]


def directives(text: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(``define``/``undef``, name, whole directive) of every macro directive of a file."""
    return [(m.group(1), m.group(2), m.group()) for m in _DIRECTIVE.finditer(text)]


def probe_unit(texts: Mapping[Path, bytes], sensitive: Sequence[Path],
               seen: dict[Path, list[tuple[bytes, bytes, bytes]]] | None = None) -> str | None:
    """The translation unit each architecture preprocesses in step 1: the sensitive headers,
    after the other inputs' definitions of the names those headers test (vmlinux.h's
    ``__VMLINUX_H__`` picks bpf_tracing.h's kernel register names). None where that context
    cannot be copied: a tested name undefined again or defined over several lines, or a
    header path no ``#include "..."`` can spell. ``seen``: each file's ``directives()``,
    kept across calls (both byte orders read the same headers; vmlinux.h's scan is ~35 ms)."""
    tested = {name for p in sensitive for cond in _CONDITION.findall(texts[p])
              for name in _IDENT.findall(cond)}
    context: dict[bytes, bytes] = {}
    seen = {} if seen is None else seen
    for p, text in texts.items():
        if p in sensitive:
            continue
        if p not in seen:
            seen[p] = directives(text)
        for kind, name, line in seen[p]:
            if name not in tested:
                continue
            if kind == b"undef" or context.get(name, line) != line:
                return None
            context[name] = line
    if any(c in str(p) for p in sensitive for c in '"\n'):
        return None
    return "".join([*(line.decode(errors="replace") + "\n"
                      for line in context.values()),
                    *(f'#include "{p}"\n' for p in sensitive)])


def identifiers(text: bytes, piece: int = 1 << 18) -> frozenset[bytes]:
    """Every identifier-like word of a file: a name in a comment counts (conservative).

    Scanned in pieces cut at line ends (no identifier spans one): one regex call holds the
    GIL throughout, ~60 ms on vmlinux.h, and a pool thread starting clang meanwhile would
    wait all that time; between pieces it gets its turn."""
    words: set[bytes] = set()
    start = 0
    while start < len(text):
        end = text.find(b"\n", start + piece)
        end = len(text) if end < 0 else end + 1
        words.update(_IDENT.findall(text, start, end))
        start = end
    return frozenset(words)


def parse_arches(text: str, where: str = "--arch") -> tuple[str, ...]:
    names = tuple(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    if not names:
        raise ConfigError(f"{where}: no architecture given (known: {', '.join(ARCHES)})")
    for a in names:
        if a not in ARCHES:
            raise ConfigError(f"{where}: unknown architecture {a!r} (known: {', '.join(ARCHES)})")
    return names


def parse_arch_cflags(items: Sequence[str], where: str = "--arch-cflags"
                      ) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``arm64=-Ivmlinux/arm64 -DX`` items -> ((arch, flags), ...), flags split like a shell."""
    import shlex

    out: dict[str, list[str]] = {}
    for item in items:
        arch, sep, flags = item.partition("=")
        arch = arch.strip()
        if not sep or not arch:
            raise ConfigError(f"{where}: {item!r} is not ARCH=FLAGS (e.g. arm64=-Ivmlinux/arm64)")
        if arch not in ARCHES:
            raise ConfigError(f"{where}: unknown architecture {arch!r} "
                              f"(known: {', '.join(ARCHES)})")
        try:
            out.setdefault(arch, []).extend(shlex.split(flags))
        except ValueError as e:
            raise ConfigError(f"{where}: {item!r}: {e}") from None
    return tuple((a, tuple(f)) for a, f in out.items())


def resolve_jobs(jobs: int | None) -> int:
    """``jobs``, else ``EBPF_GEN_JOBS``, else the CPUs this process may run on."""
    if jobs is None:
        env = os.environ.get("EBPF_GEN_JOBS", "").strip()
        if env:
            try:
                jobs = int(env)
            except ValueError:
                raise ConfigError(f"EBPF_GEN_JOBS={env!r} is not a number "
                                  f"(1 to {MAX_JOBS})") from None
            where = "EBPF_GEN_JOBS"
        else:
            try:
                return max(1, min(MAX_JOBS, len(os.sched_getaffinity(0))))
            except (AttributeError, OSError):
                return max(1, min(MAX_JOBS, os.cpu_count() or 1))
    else:
        where = "--jobs"
    if not 1 <= jobs <= MAX_JOBS:
        raise ConfigError(f"{where}={jobs}: out of range (1 to {MAX_JOBS})")
    return jobs


@dataclass(frozen=True)
class Built:
    """One byte order's objects: key (``"little"`` or ``"little/arm64"``) -> (file name, bytes)."""

    objects: dict[str, tuple[str, bytes]]
    primary: str  # key of the object whose BTF the module is laid out from
    inputs: tuple[Path, ...]
    warnings: str
    # (arch, first line of its error): architectures of this byte order with no object
    failed: tuple[tuple[str, str], ...] = field(default=())
    # how its architectures were told apart: "one architecture", "headers" (step 1 of the
    # module docstring: they share the primary's object), "preprocessed" (step 2)
    check: str = "one architecture"


class Pool:
    """A thread pool (clang runs outside the GIL), or inline calls for ``jobs == 1``."""

    def __init__(self, jobs: int) -> None:
        self._ex = ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None

    @property
    def parallel(self) -> bool:
        return self._ex is not None

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        if self._ex is not None:
            return self._ex.submit(fn)
        fut: Future[T] = Future()
        try:
            fut.set_result(fn())
        except BaseException as e:  # re-raised by result(), like the pool's futures
            fut.set_exception(e)
        return fut

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)


def _first_line(e: CompileError) -> str:
    lines = [ln for ln in str(e).splitlines()[1:] if "error:" in ln]
    return (lines[0] if lines else str(e).splitlines()[0]).strip()


def build_objects(
    source: Path,
    tmp: Path,
    stem: str,
    *,
    targets: Sequence[str],
    arches: Sequence[str] = DEFAULT_ARCHES,
    arch_cflags: Mapping[str, Sequence[str]] | None = None,
    cc: str = "clang",
    strip: bool = True,
    cflags: Sequence[str] = (),
    pool: Pool,
    on_primary: Callable[[str, bytes], None] | None = None,
) -> dict[str, Built]:
    """Objects for each of ``targets`` (``bpfel``/``bpfeb``), keyed by byte order.

    ``on_primary(order, data)`` runs (in the caller's thread) when the first byte order's
    primary object is ready, while the other compiles go on: the source parse starts there.
    A byte order none of whose architectures compiles has no objects (only ``failed``); if
    no byte order compiled at all, the first CompileError is raised.
    """
    extra = dict(arch_cflags or {})
    strip_tool = "llvm-strip" if strip else None

    def run(target: str, arch: str, preprocess: bool) -> Callable[[], CompileResult]:
        suffix = ".i" if preprocess else ".o"
        out = tmp / f"{stem}_{target}_{arch}{suffix}"
        flags = (*cflags, *extra.get(arch, ()))
        return lambda: compile_bpf(source, out, target=target, arch=arch, cc=cc,
                                   strip=strip_tool, cflags=flags, preprocess=preprocess)

    def probe(unit: Path, target: str, arch: str) -> Callable[[], CompileResult]:
        # -dD: the macros too, as this architecture defines them; flags as the compile's
        return lambda: compile_bpf(unit, tmp / f"{stem}_{target}_{arch}.dD", target=target,
                                   arch=arch, cc=cc, strip=None, cflags=(*cflags, "-dD"),
                                   preprocess=True, cwd=source.resolve().parent)

    # both byte orders read the same headers: each is read and scanned once
    texts: dict[Path, bytes] = {}
    words: dict[Path, frozenset[bytes]] = {}
    seen: dict[Path, list[tuple[bytes, bytes, bytes]]] = {}

    def shares(primary: CompileResult, target: str, archs: Sequence[str]) -> bool:
        """Step 1 of the module docstring: True when every architecture of ``archs`` would
        compile to the primary's object."""
        if any(extra.get(a) for a in archs):
            return False  # flags of its own: anything may differ
        try:
            for p in primary.inputs:
                if p not in texts:
                    texts[p] = p.read_bytes()
        except OSError:
            return False
        mine = {p: texts[p] for p in primary.inputs}
        sensitive = arch_sensitive(mine)
        if not sensitive:
            return True
        if source.resolve() in sensitive:
            return False  # the source itself tests the architecture: compare it whole
        text = probe_unit(mine, sensitive, seen)
        if text is None:
            return False
        unit = tmp / f"{stem}_{target}_arch.c"
        unit.write_text(text)
        futs = [pool.submit(probe(unit, target, a)) for a in archs]
        # the other inputs' words while the probes run (vmlinux.h's take ~60 ms)
        for p in mine:
            if p not in sensitive and p not in words:
                words[p] = identifiers(texts[p])
        for f in futs:
            f.exception()  # every run waited for: none may still write into tmp
        try:
            probes = [f.result().object.read_bytes() for f in futs]
        except (CompileError, OSError):
            return False
        reaching = arch_dependent_names(probes)
        if reaching is None:
            return False
        return all(reaching.isdisjoint(words[p]) for p in mine if p not in sensitive)

    plan: dict[str, list[str]] = {}
    for target in targets:
        order = BYTEORDER[target]
        archs = [a for a in arches if order in ARCHES[a]]
        # the byte order's primary first (x86, s390): the one compiled at once and parsed
        archs.sort(key=lambda a: a != PRIMARY[order])
        plan[target] = archs
    # The primary compile of each order starts at once. Its inputs decide whether the other
    # architectures share it (step 1 of the module docstring) or are preprocessed (step 2).
    primary_fut = {t: pool.submit(run(t, a[0], False)) for t, a in plan.items() if a}
    pre_fut: dict[tuple[str, str], Future[CompileResult]] = {}
    check: dict[str, str] = {}
    first = True
    for target, archs in plan.items():
        if not archs:
            continue
        try:
            primary: CompileResult | None = primary_fut[target].result()
        except CompileError:
            primary = None  # reported below; the other architectures may still compile
        if primary is not None and first and on_primary is not None:
            first = False
            on_primary(BYTEORDER[target], primary.object.read_bytes())
        if len(archs) == 1:
            check[target] = "one architecture"
        elif primary is not None and shares(primary, target, archs):
            check[target] = "headers"
        else:
            check[target] = "preprocessed"
            pre_fut.update({(target, a): pool.submit(run(target, a, True)) for a in archs})
    out: dict[str, Built] = {}
    errors: list[CompileError] = []
    for target, archs in plan.items():
        order = BYTEORDER[target]
        if not archs:
            continue
        groups: dict[bytes | str, list[str]] = {}
        failed: list[tuple[str, str]] = []
        inputs: dict[Path, None] = {}
        for a in archs:
            if check[target] != "preprocessed":
                groups.setdefault(b"", []).append(a)
                continue
            try:
                res = pre_fut[target, a].result()
            except CompileError:
                groups.setdefault(f"error:{a}", []).append(a)  # the compile will say why
                continue
            inputs.update(dict.fromkeys(res.inputs))
            groups.setdefault(comparable(res.object.read_bytes()), []).append(a)
        # Preprocessed texts identical to the primary's share its compile
        compiles: list[tuple[list[str], Future[CompileResult]]] = []
        for members in groups.values():
            fut = primary_fut[target] if archs[0] in members else pool.submit(
                run(target, members[0], False))
            compiles.append((members, fut))
        # one key per distinct object, in the order of the architectures
        by_bytes: dict[bytes, list[str]] = {}
        warnings = ""
        for members, fut in compiles:
            try:
                res = fut.result()
            except CompileError as e:
                errors.append(e)
                failed += [(a, _first_line(e)) for a in members]
                continue
            data = res.object.read_bytes()
            inputs.update(dict.fromkeys(res.inputs))
            if archs[0] in members:
                warnings = res.warnings
            by_bytes.setdefault(data, []).extend(members)
        if not by_bytes:  # left out; its failures still reported
            out[order] = Built({}, "", tuple(inputs), "", tuple(failed), check[target])
            continue
        objects: dict[str, tuple[str, bytes]] = {}
        arch_of = {a: i for i, a in enumerate(archs)}
        shared = len(by_bytes) == 1 and not failed
        for data, members in sorted(by_bytes.items(), key=lambda kv: arch_of[kv[1][0]]):
            members.sort(key=arch_of.__getitem__)
            if shared:
                objects[order] = (object_name(stem, order), data)
                continue
            # one file per distinct object, named after its first architecture
            name = object_name(stem, order, members[0])
            for a in members:
                objects[object_key(order, a)] = (name, data)
        out[order] = Built(objects, next(iter(objects)), tuple(inputs), warnings,
                           tuple(sorted(failed, key=lambda f: arch_of[f[0]])), check[target])
    if not any(b.objects for b in out.values()):
        raise errors[0] if errors else CompileError("no architecture of the requested byte "
                                                    "orders (--target, --arch)", where=str(source))
    return out
