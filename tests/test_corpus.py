"""A varied corpus of BPF programs, each through ``ebpf-gen --object`` and imported.

Importing a generated module runs its ``check_layout`` asserts, so a ctypes layout that
disagrees with BTF fails here. The kernel-type programs include a vmlinux.h dumped from the
running kernel's BTF once per session (never committed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import compile_bpf, need

CORPUS = Path(__file__).parent / "corpus"

@pytest.fixture(scope="session")
def vmlinux_h(tmp_path_factory: pytest.TempPathFactory) -> Path:
    btf = Path("/sys/kernel/btf/vmlinux")
    need(None if btf.exists() else "kernel has no BTF (/sys/kernel/btf/vmlinux)")
    need(None if shutil.which("bpftool") else "bpftool not installed (scripts/setup.sh)")
    d = tmp_path_factory.mktemp("vmlinux")
    with open(d / "vmlinux.h", "w") as f:
        subprocess.run(["bpftool", "btf", "dump", "file", str(btf), "format", "c"],
                       stdout=f, check=True)
    return d


# (corpus file, stem, extra ebpf-gen args, needs vmlinux.h)
CASES = [
    ("maps_vars.bpf.c", "maps_vars", ["--all-types"], False),
    ("layouts.bpf.c", "layouts", ["--all-types"], False),
    ("layouts.bpf.c", "layouts_min", ["--type", "enum big_flags"], False),
    ("core_task.bpf.c", "core_task", [], True),
    ("core_task.bpf.c", "core_task_all", ["--all-types"], True),
]


def _generate(src: Path, out_dir: Path, stem: str, target: str, args: list[str],
              include: Path | None) -> subprocess.CompletedProcess[str]:
    obj = out_dir.parent / f"{stem}_{target}_input.o"
    extra = ("-I", str(include)) if include else ()
    compile_bpf(src, obj, target=target, extra=extra)
    # run from the project dir with relative paths, as a user would: the module records them
    root = out_dir.parent
    return subprocess.run(
        [sys.executable, "-m", "ebpf_gen.cli", "--object", obj.name, "--stem", stem,
         "--output-dir", out_dir.name, *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300, cwd=root,
    )


@pytest.mark.parametrize(("src", "stem", "args", "kernel_types"), CASES,
                         ids=[c[1] for c in CASES])
def test_object_generates_and_imports(
    request: pytest.FixtureRequest, tmp_path: Path, src: str, stem: str, args: list[str],
    kernel_types: bool,
) -> None:
    include = request.getfixturevalue("vmlinux_h") if kernel_types else None
    out = tmp_path / "out"
    proc = _generate(CORPUS / src, out, stem, "bpfel", args, include)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.py", f"{stem}_bpfel.o"]
    text = (out / f"{stem}.py").read_text()
    assert str(tmp_path) not in text  # no absolute paths in the module
    compile(text, f"{stem}.py", "exec")
    env = dict(os.environ, PYTHONPATH=str(out))
    imp = subprocess.run(
        [sys.executable, "-c", f"import {stem} as m; print(m.OBJECT.name)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert imp.returncode == 0, imp.stderr
    assert imp.stdout.strip() == stem
    # and passes mypy --strict, finding ebpf_gen through the install as a user's mypy does
    typed = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file",
         "/dev/null", "--python-version", "3.10", "--follow-imports=silent", f"{stem}.py"],
        capture_output=True, text=True, cwd=out,
        timeout=600,
    )  # fmt: skip
    assert typed.returncode == 0, typed.stdout + typed.stderr


def test_event_maps_warn_without_source(tmp_path: Path) -> None:
    proc = _generate(CORPUS / "maps_vars.bpf.c", tmp_path / "out", "mv", "bpfel", [], None)
    assert proc.returncode == 0, proc.stderr
    for name in ("events", "ring"):
        assert f"warning: map '{name}' " in proc.stderr
    assert proc.stderr.count("its event type cannot be inferred without the C source") == 2


def test_big_endian_object_is_named_bpfeb(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _generate(CORPUS / "layouts.bpf.c", out, "lay", "bpfeb", [], None)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["lay.py", "lay_bpfeb.o"]
    assert '"big"' in (out / "lay.py").read_text()


def test_corpus_generates_deterministically(tmp_path: Path, vmlinux_h: Path) -> None:
    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}" / "out"
        out.parent.mkdir()
        proc = _generate(CORPUS / "core_task.bpf.c", out, "core_task", "bpfel", [], vmlinux_h)
        assert proc.returncode == 0, proc.stderr
        runs.append({p.name: p.read_bytes() for p in out.iterdir()})
    assert runs[0] == runs[1]
