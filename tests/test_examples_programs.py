"""The cilium/ebpf example twins (xdp, tcx, cgroup_skb) and the profile sampler, run as a
user runs them: a subprocess per app, traffic or load the test makes itself, exact counts
read from the app's JSON lines."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ebpf_gen.runtime.diagnose import cgroup2_mounts, kernel_version

from tests.conftest import REPO, VM_KERNEL, require_tool
from tests.netns import VethPair, in_ns, veth_pair

pytestmark = pytest.mark.kernel

WAIT = 60.0 if VM_KERNEL else 20.0


class App:
    """An example app started with ``prefix`` (tests.netns.in_ns); JSON lines queued."""

    def __init__(self, module: str, *args: str, prefix: tuple[str, ...] = ()) -> None:
        argv = [*prefix, sys.executable, "-m", f"examples.{module}", "--json", *args,
                "--duration", str(2 * WAIT)]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first line for which ``ok`` holds (AssertionError with the last one after WAIT)."""
        deadline, last = time.monotonic() + WAIT, None
        while time.monotonic() < deadline:
            try:
                last = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if ok(last):
                return last
        raise AssertionError(f"no matching line; last {last}; stderr: {self.stop()[1]}")

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


@pytest.fixture
def pair() -> Iterator[VethPair]:
    require_tool("ip")
    with veth_pair("i10x") as p:
        yield p


def _send(pair: VethPair, src: str, dport: int, n: int, sport: int = 0) -> None:
    s = pair.udp_socket(src, sport)
    with s:
        for _ in range(n):
            s.sendto(b"ping", (pair.addr_a if src == "b" else pair.addr_b, dport))


def test_xdp_counts_per_source(pair: VethPair) -> None:
    app = App("xdp", pair.dev_a, "--interval", "0.2", prefix=tuple(in_ns(pair.ns_a)))
    try:
        assert app.wait_for(lambda r: True) == {"packets": {}}  # attached, nothing yet
        _send(pair, "b", 47201, 7)
        line = app.wait_for(lambda r: r["packets"].get(pair.addr_b) == 7)
        assert line["packets"] == {pair.addr_b: 7}
    finally:
        rc, err = app.stop()
    assert rc == 0, err


def test_tcx_counts_both_directions(pair: VethPair) -> None:
    app = App("tcx", pair.dev_a, "--interval", "0.2", prefix=tuple(in_ns(pair.ns_a)))
    try:
        first = app.wait_for(lambda r: True)
        assert first["sessions"] == []
        assert first["via"] == ("tcx" if kernel_version() >= (6, 6) else "clsact")
        _send(pair, "b", 47211, 3, sport=47212)  # ingress on a
        _send(pair, "a", 47212, 2, sport=47211)  # egress from a, the same session reversed
        want = {"proto": "UDP", "src": f"{pair.addr_b}:47212", "dst": f"{pair.addr_a}:47211",
                "in": 3, "out": 2}
        app.wait_for(lambda r: want in r["sessions"])
    finally:
        rc, err = app.stop()
    assert rc == 0, err
    if kernel_version() < (6, 6):
        assert "tcx needs kernel >= 6.6" in err  # the fallback is said, not silent


CHILD = """
import socket, sys
sys.stdin.readline()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(9):
    s.sendto(b"x", ("127.0.0.1", 47221))
"""


def test_cgroup_skb_counts_a_cgroups_egress() -> None:
    root = next((Path(p) for p in ("/sys/fs/cgroup/unified", *cgroup2_mounts())
                 if Path(p, "cgroup.procs").exists()), None)
    assert root is not None, "no cgroup v2 mount"
    group = root / f"ebpf-gen-i10-example-{os.getpid()}"
    group.mkdir()
    app = App("cgroup_skb", "--cgroup", str(group), "--interval", "0.2")
    try:
        assert app.wait_for(lambda r: True)["packets"] == 0
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, text=True)
        (group / "cgroup.procs").write_text(f"{child.pid}\n")
        child.communicate("go\n", timeout=WAIT)
        assert child.returncode == 0
        line = app.wait_for(lambda r: r["packets"] >= 9)
        time.sleep(0.5)
        assert line["packets"] == 9 and app.wait_for(lambda r: True)["packets"] == 9
    finally:
        rc, err = app.stop()
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)
    assert rc == 0, err


BUSY = "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass\n"


def test_profile_samples_a_busy_process() -> None:
    app = App("profile", "--interval", "0.5", "--frequency", "199")
    try:
        first = app.wait_for(lambda r: True)
        assert first["cpus"] == os.cpu_count()
        busy = subprocess.Popen([sys.executable, "-c", BUSY])

        def sampled(r: dict[str, Any]) -> bool:
            return any(t["pid"] == busy.pid and t["samples"] >= 30 for t in r["top"])

        line = app.wait_for(sampled)
        busy.wait(timeout=WAIT)
        row = next(t for t in line["top"] if t["pid"] == busy.pid)
        assert row["comm"] == Path(sys.executable).name[:15] or row["comm"].startswith("python")
    finally:
        rc, err = app.stop()
    assert rc == 0, err


def test_xdp_live_frame_sends_exactly_count(pair: VethPair) -> None:
    from generated import xdp_live_frame
    from tests.netns import inside, receive_all

    rx = pair.udp_socket("b", 47231)
    # A veth transmits XDP frames only to a peer with XDP enabled: a pass program on b.
    with rx, xdp_live_frame.load() as objs:
        with inside(pair.ns_b):
            peer = objs.programs.xdp_prog_pass.attach_xdp(pair.dev_b)
        mac = pair.mac(pair.dev_b)
        with peer:
            proc = subprocess.run(
                [*in_ns(pair.ns_a), sys.executable, "-m",
                 "examples.xdp_live_frame", pair.dev_a, mac, pair.addr_a, pair.addr_b,
                 "--port", "47231", "--count", "25", "--json"],
                cwd=REPO, capture_output=True, text=True, timeout=WAIT,
            )
            assert proc.returncode == 0, proc.stderr
            assert json.loads(proc.stdout) == {"interface": pair.dev_a, "sent": 25}
            got = receive_all(rx, 25)
    assert got == [b"ebpf-gen live frame"] * 25


ALLOC = (
    "import mmap\n"
    "m = mmap.mmap(-1, 32 << 20)\n"
    "for i in range(0, 32 << 20, 4096):\n"
    "    m[i] = 1\n"
)


def test_tracepoint_in_c_counts_page_allocations() -> None:
    app = App("tracepoint_in_c", "--interval", "0.2")
    try:
        before = app.wait_for(lambda r: True)["mm_page_alloc"]
        # 8192 pages touched: at least that many order-0 allocations, or a few dozen huge
        # ones where THP serves them; either way the counter moves by more than noise.
        subprocess.run([sys.executable, "-c", ALLOC], check=True, timeout=WAIT)
        app.wait_for(lambda r: r["mm_page_alloc"] >= before + 16)
    finally:
        rc, err = app.stop()
    assert rc == 0, err


def test_map_in_map_inner_maps_of_their_own_sizes() -> None:
    proc = subprocess.run([sys.executable, "-m", "examples.map_in_map", "--seed", "7", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=WAIT)
    assert proc.returncode == 0, proc.stderr
    *inner, read = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["key"] for r in inner] == [0, 1, 2, 3, 4]
    assert len({r["id"] for r in inner}) == 5 and {r["type"] for r in inner} == {2}  # ARRAY
    assert all(r["sum"] == 0xCAFE * r["max_entries"] for r in inner)
    assert len({r["max_entries"] for r in inner}) > 1  # sized one by one, not by the template
    assert read == {"read_by_bpf": 0xCAFE}


def test_uretprobe_prints_the_lines_bash_reads(tmp_path: Path) -> None:
    import pty

    bash = require_tool("bash")
    app = App("uretprobe", "--binary", str(Path(bash).resolve()), "--count", "2")
    assert app.proc.stderr is not None
    assert "attached to readline" in app.proc.stderr.readline()
    primary, secondary = pty.openpty()  # readline only runs on a terminal
    prompt = b"ebpf-gen-ready$ "
    shell = subprocess.Popen([bash, "--norc", "--noprofile", "-i"], stdin=secondary,
                             stdout=secondary, stderr=secondary, close_fds=True,
                             env={"PATH": "/usr/bin:/bin", "TERM": "dumb", "HOME": str(tmp_path),
                                  "PS1": prompt.decode()})
    os.close(secondary)
    try:
        # Type only at the first prompt. The lines used to be written while bash was still
        # starting, and one run of the trixie tier saw neither come back from readline:
        # waiting for the prompt takes that race out.
        seen, deadline = b"", time.monotonic() + WAIT
        while prompt not in seen and time.monotonic() < deadline:
            if select.select([primary], [], [], 0.2)[0]:
                seen += os.read(primary, 4096)
        assert prompt in seen, f"bash showed no prompt: {seen!r}"
        os.write(primary, b"echo ebpf-gen-one\n")
        os.write(primary, b"true ebpf-gen-two\n")
        lines = [app.wait_for(lambda r: True) for _ in range(2)]
        os.write(primary, b"exit\n")
        shell.wait(timeout=WAIT)
    finally:
        shell.kill()
        os.close(primary)
        rc, err = app.stop()
    assert [r["line"] for r in lines] == ["echo ebpf-gen-one", "true ebpf-gen-two"]
    assert {r["pid"] for r in lines} == {shell.pid}
    assert rc == 0, err


def test_ringbuffer_event_per_exec() -> None:
    app = App("ringbuffer", "--attach", "tracepoint")  # other execs may come first
    assert app.proc.stderr is not None
    assert "attached tracepoint/syscalls/sys_enter_execve" in app.proc.stderr.readline()
    children = []
    for _ in range(3):
        child = subprocess.Popen(["/bin/true"])
        child.wait()
        children.append(child.pid)
    seen: list[dict[str, Any]] = []
    while len([e for e in seen if e["pid"] in children]) < 3:  # bounded by wait_for's WAIT
        seen.append(app.wait_for(lambda r: True))
    rc, err = app.stop()
    mine = [e for e in seen if e["pid"] in children]
    # Each exec is reported by the task that calls execve: the forked python child.
    assert [e["pid"] for e in mine] == children and rc == 0, err
    assert all(e["comm"].startswith("python") for e in mine)


# Three TCP connections over ns a's loopback, each with a request and a reply so that both
# ends take RTT samples, made by a child the test moves into the cgroup first.
TCP_CHILD = """
import socket, sys
sys.stdin.readline()
srv = socket.socket(); srv.bind(("127.0.0.1", 47231)); srv.listen(8)
ports = []
for _ in range(3):
    c = socket.create_connection(("127.0.0.1", 47231))
    s, _ = srv.accept()
    c.sendall(b"ping"); assert s.recv(4) == b"ping"
    s.sendall(b"pong"); assert c.recv(4) == b"pong"
    ports.append(c.getsockname()[1])
    c.close(); s.close()
print(*ports)
"""


def test_tcprtt_sockops_rtt_per_connection_of_a_cgroup(pair: VethPair) -> None:
    root = next((Path(p) for p in ("/sys/fs/cgroup/unified", *cgroup2_mounts())
                 if Path(p, "cgroup.procs").exists()), None)
    assert root is not None, "no cgroup v2 mount"
    group = root / f"ebpf-gen-i10-sockops-{os.getpid()}"
    group.mkdir()
    app = App("tcprtt_sockops", "--cgroup", str(group))
    try:
        assert app.proc.stderr is not None  # it prints nothing on stdout until an RTT
        attached = app.proc.stderr.readline()
        assert attached == f"tcprtt_sockops: attached to cgroup {group}\n", attached
        child = subprocess.Popen([*in_ns(pair.ns_a), sys.executable, "-c", TCP_CHILD],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        (group / "cgroup.procs").write_text(f"{child.pid}\n")
        out, _ = child.communicate("go\n", timeout=WAIT)
        assert child.returncode == 0
        ports = {int(p) for p in out.split()}
        seen: dict[tuple[int, str], int] = {}
        while {(p, by) for p in ports for by in ("client", "server")} - set(seen):
            ev = app.wait_for(lambda r: r["dport"] == 47231)
            assert (ev["src"], ev["dst"]) == ("127.0.0.1", "127.0.0.1")
            assert ev["sport"] in ports, ev  # only the child's connections, in the cgroup
            assert ev["srtt_us"] > 0
            seen[(ev["sport"], ev["by"])] = ev["srtt_us"]
    finally:
        rc, err = app.stop()
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)
    assert rc == 0, err
