"""Hostile input to the generator (issue 8): each failure class the fuzzing found, as a
minimal input (tests/fuzz/cases.py), in-process and through the CLI: exit 2, one line
naming the file, control characters escaped, nothing written; never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ebpf_gen.elf import read_bytes
from ebpf_gen.errors import ElfError, GenError, InternalError, guarded, printable
from ebpf_gen.generate import Options, build_from_bytes, check_compiles

from .fuzz.cases import CASES

SENTINEL = b"# previous output\n"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ebpf_gen.cli", *args],
        cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )


def assert_refused(proc: subprocess.CompletedProcess[str], name: str, out: Path,
                   message: str = "") -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"ebpf-gen: {name}: "), proc.stderr
    assert message in lines[0], proc.stderr
    assert "\x1b" not in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {"fuzz.py": SENTINEL}
    return lines[0]


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    d = tmp_path / "generated"
    d.mkdir()
    (d / "fuzz.py").write_bytes(SENTINEL)
    return d


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_in_process(name: str) -> None:
    case = CASES[name]
    with pytest.raises(GenError) as info:
        build_from_bytes(case.build(), "bad.o", Options(stem="fuzz", all_types=case.all_types))
    err = info.value
    assert not isinstance(err, InternalError), err.__cause__
    text = str(err)
    assert text.startswith("bad.o: ") and case.message in text, text
    assert text.isprintable(), text


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_through_the_cli(tmp_path: Path, out: Path, name: str) -> None:
    case = CASES[name]
    (tmp_path / "bad.o").write_bytes(case.build())
    args = ["--object", "bad.o", "--stem", "fuzz", "--output-dir", "generated"]
    proc = run_cli(*args, *(["--all-types"] if case.all_types else []), cwd=tmp_path)
    assert_refused(proc, "bad.o", out, case.message)


def test_names_are_escaped_in_messages() -> None:
    assert printable("a\nb\x1b[31m\u202e\x00") == "a\\nb\\x1b[31m\\u202e\\x00"
    assert printable(printable("x\ty")) == "x\\ty"
    assert printable("ünïcode ok") == "ünïcode ok"
    err = GenError("map 'a\nb'", where="sec\x1b")
    assert str(err) == "sec\\x1b: map 'a\\nb'"


def test_unexpected_exceptions_become_one_line_internal_errors() -> None:
    with pytest.raises(InternalError) as info, guarded("obj.o"):
        raise KeyError("x\ny")
    assert str(info.value).startswith("obj.o: internal error KeyError at test_hardening.py:")
    assert "\n" not in str(info.value) and isinstance(info.value.__cause__, KeyError)
    with pytest.raises(InternalError, match=r"^obj\.o: types nest too deeply"), guarded("obj.o"):
        raise RecursionError
    with pytest.raises(GenError, match=r"^obj\.o: type id 3: bad$"), guarded("obj.o"):
        raise GenError("bad", where="type id 3")


def test_module_that_does_not_compile_is_refused() -> None:
    text = ("import ctypes\n\n\nclass Deep(ctypes.Structure):\n    x = "
            + "(" * 300 + "1" + ")" * 300 + "\n")
    with pytest.raises(InternalError, match=r"fuzz.py would not compile in Deep \(line 5\)"):
        check_compiles(text, "fuzz.py")
    check_compiles("x = 1\n", "fuzz.py")


# --object reads only regular files, with a size bound


def test_object_fifo_devzero_loop_directory(tmp_path: Path, out: Path) -> None:
    os.mkfifo(tmp_path / "fifo.o")
    (tmp_path / "loop1.o").symlink_to("loop2.o")
    (tmp_path / "loop2.o").symlink_to("loop1.o")
    (tmp_path / "dir.o").mkdir()
    for obj, message in (("fifo.o", "is a FIFO, not a regular file"),
                         ("/dev/zero", "is a character device, not a regular file"),
                         ("loop1.o", "too many levels of symbolic links"),
                         ("dir.o", "is a directory")):
        proc = run_cli("--object", obj, "--stem", "fuzz", "--output-dir", "generated",
                       cwd=tmp_path)
        assert_refused(proc, obj, out, message)


def test_object_size_bound(tmp_path: Path) -> None:
    big = tmp_path / "big.o"
    big.write_bytes(b"\x7fELF" + b"\0" * 100)
    with pytest.raises(ElfError, match="104 bytes, more than the 100 an object may have"):
        read_bytes(big, limit=100)
    assert read_bytes(big, limit=104)[:4] == b"\x7fELF"
