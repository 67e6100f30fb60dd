"""Compile one source for every byte order and architecture, in parallel, keeping one object
per byte order unless the code depends on the architecture.

``bpf_tracing.h``'s ``PT_REGS_*`` macros read registers at architecture-specific offsets
(``PT_REGS_PARM1`` is ``r1 + 112`` on x86, ``r1 + 0`` on arm64), so such a program needs an
object per architecture; most programs never touch ``pt_regs`` and compile to the same bytes
for every ``__TARGET_ARCH_*``. Preprocessing costs a fraction of a compile, so every
architecture is preprocessed, architectures whose preprocessed text is identical share one
compile, and objects that still come out byte-identical are merged. An architecture whose
compile fails (``BPF_KPROBE`` for arm64 against x86's headers: no ``struct user_pt_regs``)
gets no object, the others are recorded as architecture-specific, and the module refuses it.

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
# pt_regs___s390) whether or not the program uses it, and forward-declares struct pt_regs for
# an architecture it does not know (loongarch in libbpf 1.1). Declared and unused, neither
# changes
# code nor BTF (clang emits only types in use); used, the macro expansions naming it differ
# anyway. Dropped from the comparison, so a program that never touches pt_regs costs one
# preprocessing per architecture rather than one compile each.
_UNUSED_FLAVOURS = re.compile(
    rb'^(?:# \d+ "[^"\n]*"[^\n]*\n)?struct pt_regs(?:___\w+ \{[^{}]*\})?;\n', re.M)


def comparable(preprocessed: bytes) -> bytes:
    return _UNUSED_FLAVOURS.sub(b"", preprocessed)


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


class Pool:
    """A thread pool (clang runs outside the GIL), or inline calls for ``jobs == 1``."""

    def __init__(self, jobs: int) -> None:
        self._ex = ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None

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

    plan: dict[str, list[str]] = {}
    for target in targets:
        order = BYTEORDER[target]
        archs = [a for a in arches if order in ARCHES[a]]
        # the byte order's primary first (x86, s390): the one compiled at once and parsed
        archs.sort(key=lambda a: a != PRIMARY[order])
        plan[target] = archs
    # The primary compile of each order starts at once; the preprocessing beside it decides
    # whether any other architecture needs a compile of its own.
    primary_fut = {t: pool.submit(run(t, a[0], False)) for t, a in plan.items() if a}
    pre_fut = {(t, a): pool.submit(run(t, a, True))
               for t, archs in plan.items() if len(archs) > 1 for a in archs}
    out: dict[str, Built] = {}
    errors: list[CompileError] = []
    first = True
    for target, archs in plan.items():
        order = BYTEORDER[target]
        if not archs:
            continue
        groups: dict[bytes | str, list[str]] = {}
        failed: list[tuple[str, str]] = []
        inputs: dict[Path, None] = {}
        for a in archs:
            if len(archs) == 1:
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
                if first and on_primary is not None:
                    first = False
                    on_primary(order, data)
            by_bytes.setdefault(data, []).extend(members)
        if not by_bytes:  # left out; its failures still reported
            out[order] = Built({}, "", tuple(inputs), "", tuple(failed))
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
        primary = next(iter(objects))
        out[order] = Built(objects, primary, tuple(inputs), warnings,
                           tuple(sorted(failed, key=lambda f: arch_of[f[0]])))
    if not any(b.objects for b in out.values()):
        raise errors[0] if errors else CompileError("no architecture of the requested byte "
                                                    "orders (--target, --arch)", where=str(source))
    return out
