"""The map examples run as the user runs them (a subprocess each): runqlat's histogram,
offcputime's symbolized stacks, and pinned_counter's counts surviving a restart."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool

pytestmark = pytest.mark.kernel

PYTHON = sys.executable
SLEEPER_C = r"""
#include <time.h>
__attribute__((noinline)) void sleepy_fn(void)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    long ret;
    /* nanosleep(2) without libc, whose code has no frame pointers: the user stack's top
     * frame is this function and the frame-pointer walk reaches main. */
    asm volatile("syscall" : "=a"(ret) : "a"(35), "D"(&ts), "S"(0) : "rcx", "r11", "memory");
}
int main(void)
{
    for (int i = 0; i < 3000; i++)
        sleepy_fn();
    return 0;
}
"""


def run_app(module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", f"examples.{module}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_runqlat_prints_a_log2_histogram() -> None:
    proc = run_app("runqlat", "--duration", "1.5", "--interval", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.strip().startswith("usecs")]
    assert header, proc.stdout
    rows = [line for line in lines if "->" in line]
    assert rows and rows[0].split()[0:3] == ["0", "->", "1"]
    counts = [int(r.split(":")[1].split("|")[0]) for r in rows]
    assert sum(counts) > 0 and any("*" in r for r in rows)
    as_json = run_app("runqlat", "--duration", "1", "--interval", "1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    slots = json.loads(as_json.stdout.splitlines()[-1])["usecs_log2_slots"]
    assert len(slots) == 26 and sum(slots) > 0


def test_offcputime_symbolizes_kernel_and_user_stacks(tmp_path: Path) -> None:
    src, binary = tmp_path / "sleeper.c", tmp_path / "sleeper"
    src.write_text(SLEEPER_C)
    gcc = require_tool("gcc")
    subprocess.run([gcc, "-O0", "-fno-omit-frame-pointer", "-o", str(binary), str(src)],
                   check=True)
    sleeper = subprocess.Popen([str(binary)])
    try:
        proc = run_app("offcputime", "--pid", str(sleeper.pid), "--duration", "2", "--json")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 0, proc.stderr
    stacks = [json.loads(line) for line in proc.stdout.splitlines()]
    assert stacks and all(s["tgid"] == sleeper.pid for s in stacks)
    top = stacks[0]
    kernel = " ".join(top["kernel"])
    assert "schedule" in kernel and "nanosleep" in kernel, top
    assert top["user"][0].startswith("sleepy_fn+") and top["user"][0].endswith("[sleeper]")
    assert any(f.startswith("main+") for f in top["user"]), top
    assert top["comm"] == "sleeper" and top["usecs"] > 100_000  # ~2 s of 20 ms naps
    text = run_app("offcputime", "--pid", "1", "--duration", "0.5", "--depth", "0")
    assert text.returncode == 2 and "--depth must be in 1..127" in text.stderr


@pytest.fixture
def bpffs(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "bpffs"
    root.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


OTHER_UID = 23456


def _exec_as_other(n: int) -> None:
    for _ in range(n):
        subprocess.run(["/bin/true"], check=True, user=OTHER_UID)


def _count_for(stdout: str) -> int:
    last = json.loads(stdout.splitlines()[-1])
    return next((c["count"] for c in last["counts"] if c["uid"] == OTHER_UID), 0)


def test_pinned_counter_survives_a_restart(bpffs: Path, tmp_path: Path) -> None:
    root = str(bpffs / "counter")
    args = ("--pin-root", root, "--duration", "3", "--interval", "3", "--json")

    def one_run(execs: int) -> tuple[bool, int]:
        app = subprocess.Popen([PYTHON, "-m", "examples.pinned_counter", *args], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert app.stdout is not None
        first = json.loads(app.stdout.readline())  # attached once this line is out
        _exec_as_other(execs)
        out, err = app.communicate(timeout=60)
        assert app.returncode == 0, err
        return first["resumed"], _count_for(out)

    resumed, first = one_run(3)
    assert not resumed and first >= 3
    assert (bpffs / "counter" / "exec_counts").exists()  # the pin outlives the app
    resumed, second = one_run(2)
    assert resumed and second >= first + 2
    reset = run_app("pinned_counter", "--pin-root", root, "--reset")
    assert reset.returncode == 0 and not (bpffs / "counter" / "exec_counts").exists()
    resumed, third = one_run(1)
    assert not resumed and 1 <= third < second


def test_pinned_counter_outside_bpffs_says_how_to_mount(tmp_path: Path) -> None:
    proc = run_app("pinned_counter", "--pin-root", str(tmp_path / "x"), "--duration", "1")
    assert proc.returncode == 1
    assert "not on a BPF filesystem" in proc.stderr and "mount -t bpf bpf" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
