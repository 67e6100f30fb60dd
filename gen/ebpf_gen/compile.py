"""Compile a BPF C file the way bpf2go does: reproducibly, for one byte order at a time.

The object must not depend on where the checkout lives (the generated module records its
sha256), so every path clang could embed is mapped to ``.``; the compile runs with the
source's directory as cwd for the same reason.
"""

from __future__ import annotations

import contextlib
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
BPF_CFLAGS = (
    "-O2",  # the verifier rejects most -O0 code (stack spills, unbounded loops)
    "-g",  # we always want BTF; the DWARF that comes with it is stripped below
    # bpf_tracing.h's PT_REGS_* macros need an architecture; bpf2go defaults to the host's
    "-D__TARGET_ARCH_x86",
)
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


def clang_command(
    source: Path, output: Path, depfile: Path, *, target: str, cc: str, cflags: Sequence[str]
) -> list[str]:
    if target not in TARGETS:
        raise CompileError(f"unknown target {target!r} (expected one of {', '.join(TARGETS)})")
    srcdir = str(source.resolve().parent)
    return [
        cc,
        *BPF_CFLAGS,
        "-target",
        target,  # explicit byte order: one object per order, picked at load time
        "-fno-ident",  # no .comment with the clang version string
        # Reproducible across checkouts: paths below the source dir are recorded as "./..."
        f"-fdebug-prefix-map={srcdir}=.",
        "-fdebug-compilation-dir",
        ".",  # DW_AT_comp_dir / BTF.ext file names must not name the build machine's cwd
        *INCLUDE_FLAGS,
        "-c",
        str(source.resolve()),
        "-o",
        str(output),
        *cflags,
        # The depfile lists the headers actually included, for the up-to-date check
        "-MD",
        "-MF",
        str(depfile),
    ]


def _run(cmd: Sequence[str], *, cwd: Path | None, where: str) -> None:
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
) -> CompileResult:
    """Compile ``source`` to ``output`` for ``target`` ("bpfel"/"bpfeb").

    ``strip`` (llvm-strip) removes DWARF but keeps .BTF/.BTF.ext; None keeps the DWARF.
    Raises CompileError with the full command and the tool's stderr.
    """
    where = str(source)
    if not source.is_file():
        raise CompileError("no such source file", where=where)
    depfile = output.with_name(output.name + ".d")
    cmd = clang_command(source, output, depfile, target=target, cc=cc, cflags=cflags)
    _run(cmd, cwd=source.resolve().parent, where=where)
    try:
        inputs = parse_depfile(depfile.read_text())
    except OSError:
        inputs = (source.resolve(),)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(depfile)
    if strip:
        _run([strip, "-g", str(output)], cwd=None, where=where)
    return CompileResult(object=output, inputs=inputs, command=tuple(cmd))


def tool_version(tool: str) -> str:
    """What ``tool --version`` prints, or "" when it cannot run (the compile will say why)."""
    try:
        proc = subprocess.run(
            [tool, "--version"], stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
    except OSError:
        return ""
    return proc.stdout.strip()

