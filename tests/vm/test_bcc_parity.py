"""BCC parity (VM tier): the BCC originals of hello-map and hello-buffer and our apps, both
on the execve kprobe at once, must see the same workload identically.

The workload runs under a UID nothing else in the guest uses, so the expected numbers are
exact: N execs -> both count N for that UID; both report exactly the N child pids.
BCC compiles against /lib/modules/$(uname -r)/build, which fetch-kernel.sh links to the
guest kernel's Debian headers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, need

BCC_DIR = Path(__file__).resolve().parent / "bcc"
DEBIAN_PYTHON = "/usr/bin/python3"  # python3-bpfcc lives in Debian's python, not the .venv
UID = 23456
N = 5
READY_TIMEOUT = 240.0  # BCC runs clang on the headers: minutes under software emulation


class Proc:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pred: object, timeout: float) -> bool:
        assert callable(pred)
        with self._cond:
            return self._cond.wait_for(lambda: any(pred(x) for x in self.lines), timeout)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return "\n".join(self.lines[-30:])


@contextmanager
def running(argv: list[str]) -> Iterator[Proc]:
    p = Proc(argv)
    try:
        yield p
    finally:
        p.stop()


def _require() -> None:
    need(None if Path(DEBIAN_PYTHON).exists() else f"{DEBIAN_PYTHON} missing")
    build = Path(f"/lib/modules/{os.uname().release}/build")
    need(None if build.is_dir() else f"no kernel headers at {build} (BCC needs them)")
    for mod in ("hello_map", "hello_buffer"):
        gen = REPO / "generated" / f"{mod}.py"
        need(None if gen.exists() else f"{gen} not generated yet (make gen)")


def _workload() -> list[int]:
    pids = []
    for _ in range(N):
        child = subprocess.Popen(["/bin/true"], user=UID, group=UID)
        child.wait()
        pids.append(child.pid)
    return pids


def _ours_attached(p: Proc) -> bool:
    # Our app prints nothing until an event arrives: prod it with an exec as root.
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        subprocess.run(["/bin/true"], check=True)
        if p.wait_for(lambda line: line.startswith("{"), 2.0):
            return True
        if p.proc.poll() is not None:
            return False
    return False


@pytest.mark.kprobe
def test_hello_buffer_matches_bcc() -> None:
    _require()
    with running([DEBIAN_PYTHON, str(BCC_DIR / "hello-buffer.py")]) as bcc, \
         running([sys.executable, "-m", "examples.hello_buffer", "--attach", "kprobe",
                  "--json", "--duration", str(READY_TIMEOUT + 60)]) as ours:
        assert bcc.wait_for(lambda x: x == "attached", READY_TIMEOUT), bcc.stop()
        assert _ours_attached(ours), ours.stop()
        pids = _workload()
        want = {(pid, UID) for pid in pids}

        def bcc_seen() -> set[tuple[int, int]]:
            # BCC's own stderr (clang's "1 warning generated.") shares the stream.
            out = set()
            for line in bcc.lines:
                f = line.split()
                if len(f) >= 2 and f[0].isdigit() and f[1] == str(UID):
                    out.add((int(f[0]), UID))
            return out

        def ours_seen() -> set[tuple[int, int]]:
            recs = [json.loads(x) for x in ours.lines if x.startswith("{")]
            return {(r["pid"], r["uid"]) for r in recs if r["uid"] == UID}

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (bcc_seen() != want or ours_seen() != want):
            time.sleep(0.5)
        assert bcc_seen() == want, f"BCC saw {sorted(bcc_seen())}, want {sorted(want)}"
        assert ours_seen() == want, f"ours saw {sorted(ours_seen())}, want {sorted(want)}"


@pytest.mark.kprobe
def test_hello_map_matches_bcc() -> None:
    _require()
    with running([DEBIAN_PYTHON, str(BCC_DIR / "hello-map.py")]) as bcc, \
         running([sys.executable, "-m", "examples.hello_map", "--attach", "kprobe",
                  "--json", "--interval", "1", "--duration", str(READY_TIMEOUT + 60)]) as ours:
        assert bcc.wait_for(lambda x: x == "attached", READY_TIMEOUT), bcc.stop()
        assert ours.wait_for(lambda x: x.startswith("{"), READY_TIMEOUT), ours.stop()
        _workload()
        bcc_want, ours_want = f"ID {UID}: {N}", {"uid": UID, "count": N}

        def ours_has() -> bool:
            return any(ours_want in json.loads(x)["counts"]
                       for x in ours.lines if x.startswith("{"))

        assert bcc.wait_for(lambda x: bcc_want in x.split("\t"), 30), bcc.stop()
        assert ours.wait_for(lambda _: ours_has(), 30), ours.stop()
