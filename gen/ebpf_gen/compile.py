"""Compile a BPF C file the way bpf2go does: reproducibly, for one byte order at a time.

The object must not depend on where the checkout lives (the generated module records its
sha256), so every path clang could embed is mapped to ``.``; the compile runs with the
source's directory as cwd for the same reason.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CompileError

TARGETS = ("bpfel", "bpfeb")
INCLUDE_DIR = Path(__file__).resolve().parent / "include"
# Flags that decide what the preprocessor and compiler see; source analysis parses with
# the same ones, or a struct's layout (and which #if branch defines it) could differ.
# The architecture flag comes last (arch_flag): the source parse uses the primary's, x86.
BPF_CFLAGS = (
    "-O2",  # the verifier rejects most -O0 code (stack spills, unbounded loops)
    "-g",  # we always want BTF; the DWARF that comes with it is stripped below
    # bpf_tracing.h's PT_REGS_* macros need an architecture: one object per architecture
    # where the code differs (build.py), x86's where the source is parsed
    "-D__TARGET_ARCH_x86",
)
BASE_CFLAGS = BPF_CFLAGS[:-1]


def arch_flag(arch: str) -> str:
    return f"-D__TARGET_ARCH_{arch}"
# <ebpf_gen/events.bpf.h> (ring buffer helpers that count drops), shipped with the package;
# its path in line info is mapped like the source's, so objects do not name the install.
INCLUDE_FLAGS = (f"-I{INCLUDE_DIR}", f"-fdebug-prefix-map={INCLUDE_DIR}=/ebpf-gen/include")
BYTEORDER = {"bpfel": "little", "bpfeb": "big"}


@dataclass(frozen=True)
class CompileResult:
    object: Path
    # Every file the preprocessor read (source first), from clang's depfile: the inputs of the
    # up-to-date check.
    inputs: tuple[Path, ...]
    command: tuple[str, ...]
    # clang's stderr of a successful compile (its warnings, file:line:col as clang prints them)
    warnings: str = ""


def clang_command(
    source: Path,
    output: Path,
    depfile: Path,
    *,
    target: str,
    cc: str,
    cflags: Sequence[str],
    arch: str = "x86",
    preprocess: bool = False,
) -> list[str]:
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r} (expected one of {', '.join(TARGETS)})")
    srcdir = str(source.resolve().parent)
    return [
        cc,
        *BASE_CFLAGS,
        arch_flag(arch),
        "-target",
        target,  # explicit byte order: one object per order, picked at load time
        "-fno-ident",  # no .comment with the clang version string
        # Reproducible across checkouts: paths below the source dir are recorded as "./..."
        f"-fdebug-prefix-map={srcdir}=.",
        "-fdebug-compilation-dir",
        ".",  # DW_AT_comp_dir / BTF.ext file names must not name the build machine's cwd
        *INCLUDE_FLAGS,
        # -E: what the compile would see, to tell architectures apart cheaply (build.py)
        "-E" if preprocess else "-c",
        str(source.resolve()),
        "-o",
        str(output),
        *cflags,
        *multiarch_include_flags(cc),  # after the user's: their -I wins
        # The depfile lists the headers actually included, for the up-to-date check
        "-MD",
        "-MF",
        str(depfile),
    ]


@functools.lru_cache(maxsize=4)
def multiarch_include_flags(cc: str = "clang") -> tuple[str, ...]:
    """``-idirafter /usr/include/<triple>``, as the compiler names the host's multiarch dir.

    ``-target bpf`` drops the host's multiarch include directory, where Debian and Ubuntu keep
    ``asm/types.h``: ``#include <linux/bpf.h>`` fails without it ("'asm/types.h' file not
    found"). clang knows the triple (``-print-multiarch``); gcc too, for a clang that does
    not. Distributions without multiarch (asm/ directly in /usr/include) need nothing.

    Asking costs a compiler start (~40 ms, before the first compile can begin), so the
    directory is taken from the filesystem when that cannot be wrong: exactly one
    ``/usr/include/<triple>/asm``, its triple this machine's (``x86_64-linux-gnu`` on
    x86_64). Foreign ones (``libc6-dev:arm64`` beside the native) or unusual triples
    (``i386-linux-gnu`` on i686) leave the question to the compiler.
    """
    found = glob.glob("/usr/include/*-linux-*/asm")
    if len(found) == 1:
        path = os.path.dirname(found[0])
        if os.path.basename(path).startswith(os.uname().machine + "-"):
            return ("-idirafter", path)
    return compilers_multiarch_flags(cc)


def compilers_multiarch_flags(cc: str = "clang") -> tuple[str, ...]:
    """multiarch_include_flags() as the compilers answer it: ``cc``, else gcc (Debian 13's
    clang 19 exits 1 on ``-print-multiarch``)."""
    for tool in (cc, "gcc"):
        try:
            proc = subprocess.run([tool, "-print-multiarch"], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        triple = proc.stdout.strip()
        if proc.returncode == 0 and triple and "/" not in triple:
            path = os.path.join("/usr/include", triple)
            if os.path.isdir(path):
                return ("-idirafter", path)
    return ()


def _run(cmd: Sequence[str], *, cwd: Path | None, where: str) -> str:
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
    except FileNotFoundError as e:
        raise CompileError(f"{cmd[0]}: command not found", where=where) from e
    except PermissionError as e:
        raise CompileError(f"{cmd[0]}: not executable ({e.strerror})", where=where) from e
    if proc.returncode != 0:
        stderr = proc.stderr.rstrip() or "(no output)"
        raise CompileError(
            f"{Path(cmd[0]).name} failed (exit {proc.returncode}): {shlex.join(cmd)}\n{stderr}",
            where=where,
        )
    return proc.stderr


def parse_depfile(text: str) -> tuple[Path, ...]:
    """Prerequisites of a make-style depfile (``out: a b \\`` continuations, ``\\ `` escapes)."""
    joined = text.replace("\\\n", " ")
    _, sep, deps = joined.partition(": ")
    if not sep:
        return ()
    out: list[Path] = []
    word: list[str] = []
    i = 0
    while i < len(deps):
        c = deps[i]
        if c == "\\" and i + 1 < len(deps) and deps[i + 1] in " #":
            word.append(deps[i + 1])
            i += 2
            continue
        if c.isspace():
            if word:
                out.append(Path("".join(word)))
                word = []
        else:
            word.append(c)
        i += 1
    if word:
        out.append(Path("".join(word)))
    return tuple(dict.fromkeys(out))


def compile_bpf(
    source: Path,
    output: Path,
    *,
    target: str,
    cc: str = "clang",
    strip: str | None = "llvm-strip",
    cflags: Sequence[str] = (),
    arch: str = "x86",
    preprocess: bool = False,
    cwd: Path | None = None,
) -> CompileResult:
    """Compile ``source`` to ``output`` for ``target`` ("bpfel"/"bpfeb") and ``arch``
    (``__TARGET_ARCH_<arch>``); ``preprocess``: write the preprocessed text instead.

    clang runs in ``cwd``, by default the source's directory (where the flags' relative
    paths were rebased to): build.py's header probe, a file in a temporary directory, runs
    where the user's source is.

    ``strip`` (llvm-strip) removes DWARF but keeps .BTF/.BTF.ext; None keeps the DWARF.
    Raises CompileError with the full command and the tool's stderr.
    """
    where = str(source)
    if not source.is_file():
        raise CompileError("no such source file", where=where)
    depfile = output.with_name(output.name + ".d")
    cmd = clang_command(source, output, depfile, target=target, cc=cc, cflags=cflags,
                        arch=arch, preprocess=preprocess)
    cwd = cwd or source.resolve().parent
    warnings = _run(cmd, cwd=cwd, where=where)
    try:
        # clang writes the paths as it opened them, relative ones from its cwd (the source's
        # directory): resolved here, so the up-to-date check can read them from anywhere
        inputs = tuple(dict.fromkeys(cwd / p for p in parse_depfile(depfile.read_text())))
    except OSError:
        inputs = (source.resolve(),)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(depfile)
    if strip and not preprocess:
        _run([strip, "-g", str(output)], cwd=None, where=where)
    return CompileResult(object=output, inputs=inputs, command=tuple(cmd), warnings=warnings)


def tool_version(tool: str) -> str:
    """What ``tool --version`` prints, or "" when it cannot run (the compile will say why)."""
    try:
        proc = subprocess.run(
            [tool, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
    except OSError:
        return ""
    return proc.stdout.strip()

