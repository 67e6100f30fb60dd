"""C snippet -> generated module, compared with tests/golden/NAME.py.

Each snippet is compiled by clang (bpfel) through the real pipeline, generated twice (the
text must be identical), compared with the committed expectation (UPDATE_GOLDEN=1 rewrites
it), imported, and its classes' sizes, member offsets and bitfield bit patterns compared
with the same types compiled by the host gcc (the region between BEGIN/END TYPES).
"""

from __future__ import annotations

import ctypes
import difflib
import importlib.util
import keyword
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
SNIPPETS = sorted(GOLDEN.glob("*.bpf.c"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
CFLAGS = ("-Wall", "-I/usr/include/x86_64-linux-gnu", f"-I{GOLDEN}")
_SHA = re.compile(r'sha256="[0-9a-f]{64}"')


def _stem(src: Path) -> str:
    return src.name.removesuffix(".bpf.c")


def generate(src: Path) -> str:
    from ebpf_gen.generate import Options, build_from_source

    stem = _stem(src)
    opts = Options(
        stem=stem,
        targets=("bpfel",),
        cflags=CFLAGS,
        command=f"UPDATE_GOLDEN=1 pytest tests/test_golden.py -k {stem}",
    )
    result = build_from_source(src.relative_to(REPO), opts)
    # The object digest depends on the clang build; the rest must not
    return _SHA.sub('sha256="<digest>"', result.files[f"{stem}.py"].decode())


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return {}


def _text(src: Path, cache: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    if src.name not in cache:
        monkeypatch.chdir(REPO)  # display paths in docstrings are relative to the cwd
        cache[src.name] = generate(src)
    return cache[src.name]


def test_enough_snippets() -> None:
    assert len(SNIPPETS) >= 30


@pytest.mark.parametrize("src", SNIPPETS, ids=_stem)
def test_golden(src: Path, generated: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    require_tool("clang")
    first = _text(src, generated, monkeypatch)
    second = generate(src)
    assert first == second, "two generations differ"
    expected_path = GOLDEN / f"{_stem(src)}.py"
    if UPDATE:
        expected_path.write_text(first)
    expected = expected_path.read_text() if expected_path.exists() else ""
    if first != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), first.splitlines(True), str(expected_path), "generated"
            )
        )
        pytest.fail(
            f"{src.name}: generated module differs from {expected_path.name} "
            f"(UPDATE_GOLDEN=1 to accept)\n--- C snippet ---\n{src.read_text()}\n"
            f"--- diff ---\n{diff}"
        )


def _import(path: Path) -> ModuleType:
    name = f"_golden_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _types_region(src: Path) -> str:
    text = src.read_text()
    start = text.index("/* BEGIN TYPES */")
    end = text.index("/* END TYPES */")
    return text[start:end]


def _c_member(py: str) -> str:
    return py[:-1] if py.endswith("_") and (keyword.iskeyword(py[:-1]) or py[:-1] in
                                              ("None", "_fields_")) else py  # fmt: skip


def _checks(cls: type[Any], c_path: str, base: int) -> list[tuple[str, str, int]]:
    """(kind, C designator, expected) for every plain member, recursively."""
    out: list[tuple[str, str, int]] = []
    for entry in cls._fields_:
        name, ftype = entry[0], entry[1]
        if name.startswith(("_pad_", "_bitfield_", "_raw_")) or len(entry) == 3:
            continue
        offset = getattr(cls, name).offset + base
        if name.startswith("_anon"):
            out.extend(_checks(ftype, c_path, offset))
            continue
        path = f"{c_path}.{_c_member(name)}" if c_path else _c_member(name)
        out.append(("offset", path, offset))
        if issubclass(ftype, (ctypes.Structure, ctypes.Union)):
            out.extend(_checks(ftype, path, offset))
    return out


def _bit_members(cls: type[Any]) -> list[tuple[str, bool]]:
    """Bitfields (real ctypes ones and Bitfield descriptors): (python name, signed)."""
    from ebpf_gen.runtime import Bitfield

    out = []
    for entry in cls._fields_:
        if len(entry) == 3:
            out.append((entry[0], entry[1]._type_ in "bhilq"))
    for name, attr in vars(cls).items():
        if isinstance(attr, Bitfield):
            out.append((name, attr.signed))
    return out


@pytest.mark.parametrize("src", SNIPPETS, ids=_stem)
def test_layout_matches_gcc(
    src: Path, generated: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generated classes agree with gcc on sizes, offsets and bitfield bits."""
    require_tool("clang")
    gcc = require_tool("gcc")
    path = tmp_path / f"{_stem(src)}.py"
    path.write_text(_text(src, generated, monkeypatch))
    module = _import(path)
    lines = [
        "#include <linux/types.h>",
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <string.h>",
        _types_region(src),
        "int main(void) {",
    ]
    expected: list[str] = []
    for c_name, cls in sorted(module.C_TYPES.items()):
        if not (isinstance(cls, type) and issubclass(cls, (ctypes.Structure, ctypes.Union))):
            continue
        lines.append(f'printf("%zu\\n", sizeof({c_name}));')
        expected.append(str(ctypes.sizeof(cls)))
        for _, designator, offset in _checks(cls, "", 0):
            lines.append(f'printf("%zu\\n", offsetof({c_name}, {designator}));')
            expected.append(str(offset))
        for name, signed in _bit_members(cls):
            # Set one bitfield to all ones in a zeroed object: both sides must agree on
            # which bytes change.
            lines.append(f"{{ {c_name} v; memset(&v, 0, sizeof v); v.{_c_member(name)} = -1;")
            lines.append("  for (size_t i = 0; i < sizeof v; i++) printf(\"%02x\", "
                         "((unsigned char *)&v)[i]); printf(\"\\n\"); }")  # fmt: skip
            obj = cls()
            bits = (getattr(cls, name).bits if hasattr(getattr(cls, name), "bits")
                    else getattr(cls, name).size >> 16)  # fmt: skip
            setattr(obj, name, -1 if signed else (1 << bits) - 1)
            expected.append(bytes(obj).hex())
    lines.append("return 0; }")
    c_file = tmp_path / "layout.c"
    c_file.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    subprocess.run([gcc, "-w", "-o", str(exe), str(c_file)], check=True)
    got = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    assert got == expected, f"gcc vs generated for {src.name}:\n{c_file.read_text()}"


def test_goldens_pass_ruff_and_mypy(tmp_path: Path) -> None:
    """The committed expectations are what ruff format would write, lint clean, and typed."""
    goldens = sorted(GOLDEN.glob("*.py"))
    assert goldens
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--no-cache", *map(str, goldens)], check=True, cwd=REPO)
    subprocess.run(
        [*ruff, "format", "--check", "--diff", "--no-cache", *map(str, goldens)],
        check=True,
        cwd=REPO,
    )
    # mypy finds ebpf_gen through the editable install's .pth entry, as a user's does; the
    # runtime's own errors are reported by `make lint`, not here
    env = dict(os.environ)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            *map(str, goldens),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
