"""The cilium/ebpf twins that need kprobes or BPF trampolines: kprobe, kprobe_percpu,
kprobepin, fentry, tcprtt. Run as a user runs them (tests.test_examples_programs.App).

Both tiers run every test. In the VM tier (Debian 5.10/6.1/6.12: kprobes and fentry
present, tests/vm/kernel_features.py) the apps must count exactly what the test does. On a
host without kprobes or trampolines (this one: no CONFIG_KPROBES, fentry refused with
EPERM) each app must stop with exit 1 and the runtime's diagnosis, not a bare errno.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, VM_KERNEL, kprobes_available
from tests.test_examples_programs import App
from tests.vm.kernel_features import lacks

pytestmark = pytest.mark.kernel

NO_KPROBES = "kprobes are unavailable on this kernel: no kprobe PMU"
NO_TRAMPOLINE = "the kernel refused a BPF trampoline for fentry (EPERM)"


def _refused(module: str, *args: str) -> str:
    """Run an app that cannot attach here: its one-line diagnosis (exit 1)."""
    proc = subprocess.run([sys.executable, "-m", f"examples.{module}", *args, "--duration", "5"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"{module}: "), proc.stderr
    return proc.stderr


def _execs(n: int) -> None:
    for _ in range(n):
        subprocess.run(["/bin/true"], check=True)


@pytest.mark.parametrize("module", ["kprobe", "kprobe_percpu"])
def test_kprobe_twins_count_execs(module: str) -> None:
    if not kprobes_available():
        assert not VM_KERNEL, "every VM-tier kernel has kprobes"
        assert NO_KPROBES in _refused(module)
        return
    app = App(module, "--interval", "0.2")
    try:
        first = app.wait_for(lambda r: True)
        key = "calls" if module == "kprobe" else "total"
        if module == "kprobe_percpu":
            assert len(first["per_cpu"]) == _possible_cpus()
        _execs(5)
        # System-wide: other processes may exec too, so at least ours.
        app.wait_for(lambda r: r[key] >= first[key] + 5)
    finally:
        rc, err = app.stop()
    assert rc == 0, err
    assert "attached ksyscall/execve" in err


def _possible_cpus() -> int:
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    return sum(int(b) - int(a) + 1 if "-" in r else 1
               for r in text.split(",") for a, _, b in [r.partition("-")])


@pytest.fixture
def bpffs(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "bpffs"
    root.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


def test_kprobepin_count_resumes_from_the_pinned_map(bpffs: Path) -> None:
    if not kprobes_available():
        assert not VM_KERNEL
        assert NO_KPROBES in _refused("kprobepin", "--pin-root", str(bpffs))
        # The map was pinned before the attach was refused: the next run takes it up.
        assert (bpffs / "kprobe_map").exists()
        return
    counts = []
    for run in range(2):
        app = App("kprobepin", "--pin-root", str(bpffs), "--interval", "0.2")
        try:
            head = app.wait_for(lambda r: "pinned" in r)
            assert head == {"pinned": str(bpffs / "kprobe_map"), "resumed": run == 1}
            start = app.wait_for(lambda r: "calls" in r)["calls"]
            if counts:
                assert start >= counts[-1]  # resumed, not from zero
            _execs(3)
            want = start + 3
            counts.append(app.wait_for(lambda r, want=want: r["calls"] >= want)["calls"])
        finally:
            rc, err = app.stop()
        assert rc == 0, err
    reset = subprocess.run([sys.executable, "-m", "examples.kprobepin", "--pin-root",
                            str(bpffs), "--reset", "--json"], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert reset.returncode == 0 and not (bpffs / "kprobe_map").exists(), reset.stderr


def _connections(port: int, n: int) -> list[int]:
    """n IPv4 TCP connections to 127.0.0.1:port with a request and a reply each, closed
    by both ends: the clients' ports."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen(n)
    ports = []
    with srv:
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port)) as c:
                s, _ = srv.accept()
                with s:
                    c.sendall(b"ping")
                    assert s.recv(4) == b"ping"
                    s.sendall(b"pong")
                    assert c.recv(4) == b"pong"
                ports.append(c.getsockname()[1])
    return ports


def _trampoline_app(module: str) -> App | None:
    """The app attached, or None after checking its refusal where trampolines are refused."""
    if VM_KERNEL:
        assert not lacks("fentry")
    app = App(module)
    assert app.proc.stderr is not None
    # Its first stderr line says it attached, or why not (then it exits 1).
    first = app.proc.stderr.readline()
    if first.startswith(f"{module}: attached"):
        return app
    app.proc.wait(timeout=60)  # exiting on its own: a SIGTERM now would cut that short
    rc, err = app.stop()
    assert not VM_KERNEL, f"{module} exited {rc} in the VM tier: {first}{err}"
    assert rc == 1 and NO_TRAMPOLINE in first and "Traceback" not in err, first + err
    return None


def test_fentry_sees_each_connect() -> None:
    app = _trampoline_app("fentry")
    if app is None:
        return
    try:
        ports = _connections(47241, 3)
        seen = set()
        while len(seen) < 3:
            ev = app.wait_for(lambda r: r["dport"] == 47241)
            assert (ev["src"], ev["dst"]) == ("127.0.0.1", "127.0.0.1")
            seen.add(ev["sport"])
        assert seen == set(ports)
    finally:
        rc, err = app.stop()
    assert rc == 0, err


def test_tcprtt_reports_each_close_with_an_rtt() -> None:
    app = _trampoline_app("tcprtt")
    if app is None:
        return
    try:
        ports = _connections(47251, 3)
        want = {(p, 47251) for p in ports} | {(47251, p) for p in ports}  # both ends close
        seen: dict[tuple[int, int], int] = {}
        while want - set(seen):
            ev = app.wait_for(lambda r: 47251 in (r["sport"], r["dport"]))
            assert (ev["src"], ev["dst"]) == ("127.0.0.1", "127.0.0.1")
            seen[(ev["sport"], ev["dport"])] = ev["srtt_us"]
        assert set(seen) == want and all(rtt > 0 for rtt in seen.values()), seen
    finally:
        rc, err = app.stop()
    assert rc == 0, err
