"""What mypy --strict says about apps written on a generated skeleton (typeshed-style cases).

``tests/typing/probe.bpf.c`` is generated (clang + the CLI) into a package ``probe``; each
file in ``tests/typing/cases`` is an app. ``pass_*`` files must type-check clean (their
``assert_type`` calls pin the types the skeleton gives); in ``fail_*`` files every line
marked ``# E: message`` must draw exactly that mypy error, and no other line any error.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_tool

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "tests" / "typing"
CASES = sorted((HERE / "cases").glob("*.py"))
_EXPECT = re.compile(r"#\s*E:\s*(.+?)\s*$")


@pytest.fixture(scope="module")
def mypy_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("clang")
    root = tmp_path_factory.mktemp("typing")
    package = root / "probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "ebpf_gen.cli", str(HERE / "probe.bpf.c"), "--output-dir",
         str(package), "--target", "bpfel", "--", "-I/usr/include/x86_64-linux-gnu"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # no ebpf_gen beside the apps: mypy finds it through the editable install (a .pth
    # entry), exactly as it does for a user's app after `pip install -e .`
    return root


def _mypy(path: Path, mypy_path: Path) -> list[tuple[int, str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version",
         "3.11", "--config-file", "/dev/null", "--hide-error-context", "--no-pretty",
         "--show-error-codes", str(path)],
        capture_output=True, text=True, cwd=mypy_path, env={"MYPYPATH": str(mypy_path),
                                                          "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    errors = []
    for line in proc.stdout.splitlines():
        m = re.match(rf"{re.escape(str(path))}:(\d+): error: (.*?)(?:  \[[\w-]+\])?$", line)
        if m:
            errors.append((int(m[1]), m[2]))
        elif ": error:" in line:
            raise AssertionError(f"mypy error outside the case:\n{proc.stdout}")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return errors


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_typing_case(case: Path, mypy_path: Path) -> None:
    expected = {
        n: m[1] for n, line in enumerate(case.read_text().splitlines(), 1)
        if (m := _EXPECT.search(line))
    }  # fmt: skip
    if case.stem.startswith("pass_"):
        assert not expected, "pass_ cases expect no errors"
    else:
        assert expected, "fail_ cases mark their expected errors with # E:"
    got = dict(_mypy(case, mypy_path))
    assert got == expected, f"{case.name}: mypy said\n" + "\n".join(
        f"  line {n}: {msg}" for n, msg in sorted(got.items())
    )


def test_skeleton_itself_passes_strict(mypy_path: Path) -> None:
    assert _mypy(mypy_path / "probe" / "probe.py", mypy_path) == []
