"""The chapter-2 example apps, run for real as the user runs them: a subprocess per app.

Each test starts the app (bounded by --duration and a subprocess timeout), causes the events
itself (execs of /bin/true, a process under another UID, POSIX timer syscalls) and checks
what the app printed: format, pid/uid/command values, counts. The same tests run with the
kprobe in the VM tier (``kprobe`` marker) and with the tracepoint on the host.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, VM_KERNEL, require_tool
from tests.vm.kernel_features import lacks

PYTHON = sys.executable
# How long a test waits for an expected line. Under the VM tier's software emulation a cold
# Python start (imports, load, attach) alone can take most of 20 s, so the guest waits longer.
WAIT = 60.0 if VM_KERNEL else 20.0
BOUND = 2 * WAIT  # --duration of every app started here: no test can leave one running
NOTICE = (
    "kprobes unavailable on this kernel: attaching to tracepoint syscalls/sys_enter_execve instead"
)
OTHER_UID = 12345
NOBODY = 65534

# The kprobe runs only where the kernel has kprobes (the VM tier); the tracepoint everywhere.
ATTACH = [
    pytest.param("tracepoint", marks=pytest.mark.kernel, id="tracepoint"),
    pytest.param("kprobe", marks=pytest.mark.kprobe, id="kprobe"),
]
TRACE_LINE = re.compile(
    r"^\s*(?P<task>.+)-(?P<pid>\d+)\s+\[\d{3}\] \S{4,5}\s+\d+\.\d{6}: bpf_trace_printk: "
    r"(?P<message>.*)$"
)


class App:
    """A running example app whose stdout lines are collected by a thread as they come."""

    def __init__(self, module: str, *args: str) -> None:
        self.argv = [PYTHON, "-m", f"examples.{module}", *args]
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a SIGINT sent to it does not reach pytest
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(
        self,
        found: Callable[[list[str]], bool],
        *,
        trigger: Callable[[], object] | None = None,
        timeout: float = WAIT,
    ) -> list[str]:
        """Wait until ``found(lines)``, calling ``trigger`` every 0.2 s meanwhile.

        Triggering repeatedly also covers the time the app takes to load and attach.
        """
        deadline = time.monotonic() + timeout
        while True:
            if trigger is not None:
                trigger()
            with self._cond:
                if found(self.lines):
                    return list(self.lines)
                if self.proc.poll() is not None and not self._reader.is_alive():
                    break
                if time.monotonic() > deadline:
                    break
                self._cond.wait(0.2)
        raise AssertionError(
            f"{' '.join(self.argv)}: expected output not seen in {timeout}s; "
            f"exit={self.proc.poll()} stdout={self.lines[-20:]!r} stderr={self.stderr_now()!r}"
        )

    def stderr_now(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read()

    def finish(self, timeout: float = WAIT) -> tuple[int, str]:
        """Wait for the app to exit by itself; returns (exit code, stderr)."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"{' '.join(self.argv)} did not exit within {timeout}s") from None
        self._reader.join(5)
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read()

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def app(request: pytest.FixtureRequest, module: str, *args: str) -> App:
    started = App(module, *args)
    request.addfinalizer(started.kill)
    return started


def run_true(**kwargs: object) -> int:
    """Exec /bin/true in a child (of this process, so its comm at execve is ours); its pid."""
    child = subprocess.Popen(["/bin/true"], **kwargs)  # type: ignore[call-overload]
    child.wait()
    return int(child.pid)


def our_comm() -> str:
    return Path("/proc/self/comm").read_text().strip()


def json_lines(lines: list[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines]


def bpftool_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [require_tool("bpftool"), "-j", *args], capture_output=True, text=True, check=True
    ).stdout
    result: list[dict[str, object]] = json.loads(out or "[]")
    return result


def links_of(program: str) -> set[int]:
    """Ids of the BPF links whose program has this name, as bpftool sees them."""
    names = {p["id"]: p.get("name") for p in bpftool_json("prog", "show")}
    return {
        int(str(link["id"]))
        for link in bpftool_json("link", "show")
        if names.get(link.get("prog_id")) == program
    }


def check_stderr(attach: str, stderr: str) -> None:
    # An explicit --attach never prints the fallback notice; nothing else is expected.
    assert NOTICE not in stderr
    assert "Traceback" not in stderr, stderr


# --- hello ------------------------------------------------------------------------------


@pytest.mark.parametrize("attach", ATTACH)
def test_hello_prints_trace_line_per_exec(request: pytest.FixtureRequest, attach: str) -> None:
    hello = app(request, "hello", "--attach", attach, "--duration", str(BOUND))
    pids: list[int] = []

    def seen(lines: list[str]) -> bool:
        return any((m := TRACE_LINE.match(line)) and int(m["pid"]) in pids for line in lines)

    lines = hello.wait_for(seen, trigger=lambda: pids.append(run_true()))
    code, stderr = hello.interrupt()
    assert code in (0, 130), stderr
    check_stderr(attach, stderr)
    for line in lines:
        m = TRACE_LINE.match(line)
        assert m, f"not a trace_pipe line: {line!r}"
        assert m["message"] == "Hello World!"
    ours = [m for line in lines if (m := TRACE_LINE.match(line)) and int(m["pid"]) in pids]
    # At execve entry the child still carries the parent's name, this test process's, unless
    # the trace buffer's name cache has no entry for the pid yet: the kernel prints <...>.
    assert ours[0]["task"].strip() in (our_comm(), "<...>")


@pytest.mark.parametrize("attach", ATTACH)
def test_hello_count_json(request: pytest.FixtureRequest, attach: str) -> None:
    hello = app(
        request, "hello", "--attach", attach, "--count", "3", "--json", "--duration", str(BOUND)
    )
    pids: list[int] = []
    deadline = time.monotonic() + WAIT
    while hello.proc.poll() is None and time.monotonic() < deadline:
        pids.append(run_true())
        time.sleep(0.1)
    code, stderr = hello.finish()
    assert code == 0, stderr
    records = json_lines(hello.lines)
    assert len(records) == 3, hello.lines
    for record in records:
        assert record["message"] == "Hello World!"
        assert isinstance(record["pid"], int)
        assert set(record) == {"task", "pid", "cpu", "timestamp", "message"}


@pytest.mark.kernel
@pytest.mark.nokprobe
def test_hello_auto_falls_back_to_tracepoint_with_notice(request: pytest.FixtureRequest) -> None:
    hello = app(request, "hello", "--count", "1", "--duration", str(BOUND))
    hello.wait_for(lambda lines: bool(lines), trigger=run_true)
    code, stderr = hello.finish()
    assert code == 0, stderr
    assert stderr.splitlines() == [NOTICE]


def perf_attachments_of(program: str) -> set[tuple[int, int]]:
    """(pid, fd) of the perf events (kprobes, tracepoints) this program is attached to
    through the perf ioctl, which is how libbpf attaches where the kernel has no perf link."""
    names = {p["id"]: p.get("name") for p in bpftool_json("prog", "show")}
    return {
        (int(str(e["pid"])), int(str(e["fd"])))
        for e in bpftool_json("perf", "show")
        if names.get(e.get("prog_id")) == program
    }


@pytest.mark.kprobe
def test_hello_auto_prefers_the_kprobe(request: pytest.FixtureRequest) -> None:
    before = {int(str(link["id"])) for link in bpftool_json("link", "show")}
    hello = app(request, "hello", "--duration", str(BOUND))
    hello.wait_for(lambda lines: bool(lines), trigger=run_true)
    if lacks("perf_link"):
        # Before 5.15 the kprobe is a perf event with the program set by ioctl: no BPF link.
        assert not links_of("hello") - before
        assert [pid for pid, _ in perf_attachments_of("hello")] == [hello.proc.pid]
        assert not perf_attachments_of("hello_tp")
    else:
        assert len(links_of("hello") - before) == 1
    assert not links_of("hello_tp") - before
    code, stderr = hello.interrupt()
    assert code in (0, 130)
    assert stderr == ""


@pytest.mark.kernel
@pytest.mark.nokprobe
@pytest.mark.parametrize("module", ["hello", "hello_map", "hello_buffer"])
def test_attach_kprobe_without_kprobes_is_one_line_error(module: str) -> None:
    proc = subprocess.run(
        [PYTHON, "-m", f"examples.{module}", "--attach", "kprobe", "--duration", "5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"{module}: --attach kprobe: this kernel has no kprobes")


def run_unprivileged(module: str, *args: str) -> tuple[int, str]:
    """Run an app's main() in a child that dropped root; its exit code and stderr.

    A fork rather than a new interpreter: the venv's interpreter lives under /root, which
    an unprivileged user cannot reach.
    """
    # Imported here: the standard library, too, is out of reach once the uid has dropped.
    app_main = importlib.import_module(f"examples.{module}").main
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.close(read_end)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = app_main(list(args))
        except BaseException as e:  # anything escaping main() is the failure
            print(f"escaped main(): {e!r}", file=sys.stderr)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with open(read_end) as out:
        output = out.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@pytest.mark.kernel
@pytest.mark.parametrize("module", ["hello", "hello_map", "hello_buffer", "hello_tail"])
def test_not_root_is_one_line_error(module: str) -> None:
    # The check itself needs nothing from the kernel; dropping to another uid needs root.
    code, output = run_unprivileged(module, "--duration", "5")
    assert code == 1, output
    [line] = output.splitlines()
    assert line.startswith(f"{module}: needs root"), line


# --- hello_map ----------------------------------------------------------------------------

ROUND = re.compile(r"^(ID \d+: \d+)(\tID \d+: \d+)*$|^$")


@pytest.mark.parametrize("attach", ATTACH)
def test_hello_map_counts_execs_per_uid(request: pytest.FixtureRequest, attach: str) -> None:
    hello_map = app(
        request, "hello_map", "--attach", attach, "--interval", "0.5", "--duration", str(BOUND)
    )
    triggered = 0

    def exec_as_other_uid() -> None:
        nonlocal triggered
        run_true(user=OTHER_UID)
        triggered += 1

    def count(lines: list[str], uid: int = OTHER_UID) -> int:
        for line in reversed(lines):
            if m := re.search(rf"(?:^|\t)ID {uid}: (\d+)(?:\t|$)", line):
                return int(m[1])
        return 0

    # Until the map shows one of our execs, the app may not be attached yet.
    hello_map.wait_for(lambda lines: count(lines) > 0, trigger=exec_as_other_uid)
    first = count(hello_map.lines)
    for _ in range(3):
        exec_as_other_uid()
    run_true()  # and one as root, so that uid 0 has an entry too
    lines = hello_map.wait_for(lambda lines: count(lines) >= first + 3 and count(lines, 0) > 0)
    assert count(lines) <= triggered  # nothing else runs as this uid
    code, stderr = hello_map.interrupt()
    assert code in (0, 130), stderr
    check_stderr(attach, stderr)
    for line in lines:
        assert ROUND.match(line), f"not a round of counts: {line!r}"


@pytest.mark.kernel
def test_hello_map_duration_and_json(request: pytest.FixtureRequest) -> None:
    started = time.monotonic()
    hello_map = app(
        request,
        "hello_map",
        "--attach",
        "tracepoint",
        "--interval",
        "0.5",
        "--duration",
        "3",
        "--json",
    )
    while hello_map.proc.poll() is None and time.monotonic() - started < 3:
        run_true(user=OTHER_UID)
        time.sleep(0.1)
    code, stderr = hello_map.finish()
    assert code == 0, stderr
    assert time.monotonic() - started < 3 + 10  # start-up and load, not another round loop
    rounds = json_lines(hello_map.lines)
    assert len(rounds) >= 2
    last = rounds[-1]
    assert set(last) == {"counts"}
    counts = {c["uid"]: c["count"] for c in last["counts"]}  # type: ignore[attr-defined]
    assert counts.get(OTHER_UID, 0) >= 1
    assert all(isinstance(v, int) and v > 0 for v in counts.values())


# --- hello_buffer -------------------------------------------------------------------------

# A command may hold spaces; the message is always the program's "Hello World".
BUFFER_LINE = re.compile(r"^(?P<pid>\d+) (?P<uid>\d+) (?P<command>.{1,15}) Hello World$")


@pytest.mark.parametrize("ringbuf", [False, True], ids=["perf", "ringbuf"])
@pytest.mark.parametrize("attach", ATTACH)
def test_hello_buffer_event_per_exec(
    request: pytest.FixtureRequest, attach: str, ringbuf: bool
) -> None:
    hello_buffer = app(
        request,
        "hello_buffer",
        "--attach",
        attach,
        "--duration",
        str(BOUND),
        *(["--ringbuf"] if ringbuf else []),
    )
    pids: list[int] = []

    def seen(lines: list[str]) -> bool:
        # Any trigger seen means attached. Waiting for the latest one raced: events arrive
        # after a short wakeup delay, by which time the next trigger had replaced it.
        triggered = {str(p) for p in pids}
        return any(line.split(" ", 1)[0] in triggered for line in lines)

    hello_buffer.wait_for(seen, trigger=lambda: pids.append(run_true()))
    # Attached now: every exec from here must show up, once, with exact values.
    more = [run_true() for _ in range(3)]
    more.append(run_true(user=OTHER_UID))
    lines = hello_buffer.wait_for(
        lambda lines: {str(p) for p in more} <= {line.split(" ", 1)[0] for line in lines}
    )
    code, stderr = hello_buffer.interrupt()
    assert code in (0, 130), stderr
    check_stderr(attach, stderr)
    for line in lines:
        assert BUFFER_LINE.match(line), f"not '<pid> <uid> <command> Hello World': {line!r}"
    # One line per exec, with exact values; the command is the name the child had when
    # execve() was entered (this process's); the uid changed before execve in the last one.
    expected = [f"{pid} 0 {our_comm()} Hello World" for pid in more[:3]]
    expected.append(f"{more[3]} {OTHER_UID} {our_comm()} Hello World")
    for pid, want in zip(more, expected, strict=True):
        assert [line for line in lines if line.split(" ", 1)[0] == str(pid)] == [want]


@pytest.mark.kernel
@pytest.mark.parametrize("ringbuf", [False, True], ids=["perf", "ringbuf"])
def test_hello_buffer_count_json(request: pytest.FixtureRequest, ringbuf: bool) -> None:
    hello_buffer = app(
        request,
        "hello_buffer",
        "--attach",
        "tracepoint",
        "--count",
        "2",
        "--json",
        "--duration",
        str(BOUND),
        *(["--ringbuf"] if ringbuf else []),
    )
    deadline = time.monotonic() + WAIT
    while hello_buffer.proc.poll() is None and time.monotonic() < deadline:
        run_true()
        time.sleep(0.1)
    code, stderr = hello_buffer.finish()
    assert code == 0, stderr
    records = json_lines(hello_buffer.lines)
    assert len(records) == 2
    for record in records:
        assert set(record) == {"pid", "uid", "command", "message"}
        assert record["message"] == "Hello World"
        assert isinstance(record["pid"], int) and record["pid"] > 0


@pytest.mark.kernel
def test_hello_buffer_sigint_detaches_its_link(request: pytest.FixtureRequest) -> None:
    before = {int(str(link["id"])) for link in bpftool_json("link", "show")}
    hello_buffer = app(request, "hello_buffer", "--attach", "tracepoint", "--duration", str(BOUND))
    hello_buffer.wait_for(lambda lines: bool(lines), trigger=run_true)
    held = links_of("hello_tp") - before
    assert len(held) == 1, f"expected the chosen program attached once, got links {held}"
    # The other three programs were not loaded, so none of them is attached either.
    for other in ("hello", "hello_rb", "hello_rb_tp"):
        assert not links_of(other) - before
    code, stderr = hello_buffer.interrupt()
    assert code in (0, 130), stderr
    assert stderr == ""
    assert not held & links_of("hello_tp")


# --- hello_tail -----------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLOCK_MONOTONIC = 1


def posix_timer() -> None:
    """timer_create (syscall 222) then timer_delete (226) from this thread."""
    timer_id = ctypes.c_void_p()
    if _libc.timer_create(CLOCK_MONOTONIC, None, ctypes.byref(timer_id)) != 0:
        raise OSError(ctypes.get_errno(), "timer_create")
    if _libc.timer_delete(timer_id) != 0:
        raise OSError(ctypes.get_errno(), "timer_delete")


def records_of(lines: list[str]) -> Iterator[dict[str, object]]:
    for line in lines:
        yield json.loads(line)


@pytest.mark.kernel
def test_hello_tail_exec_and_timers(request: pytest.FixtureRequest) -> None:
    hello_tail = app(
        request, "hello_tail", "--json", "--print-syscall", "61", "--duration", str(BOUND)
    )
    me = os.getpid()
    pids: list[int] = []

    def seen(message: str, pid: Callable[[], list[int]]) -> Callable[[list[str]], bool]:
        return lambda lines: any(
            r["message"] == message and r["pid"] in pid() for r in records_of(lines)
        )

    # Tail calls route by syscall number: execve (59) -> hello_exec, 222..226 -> hello_timer,
    # wait4 (61, asked for) -> print_syscall; everything else -> ignore_opcode (no output).
    hello_tail.wait_for(
        seen("Executing a program", lambda: pids), trigger=lambda: pids.append(run_true())
    )
    hello_tail.wait_for(seen("Creating a timer", lambda: [me]), trigger=posix_timer)
    hello_tail.wait_for(seen("Deleting a timer", lambda: [me]))
    lines = hello_tail.wait_for(seen("Syscall: 61", lambda: [me]), trigger=run_true)
    code, stderr = hello_tail.interrupt()
    assert code in (0, 130), stderr
    assert stderr == ""
    allowed = re.compile(
        r"Executing a program|Creating a timer|Deleting a timer"
        r"|Some other timer operation|Syscall: 61"
    )
    for record in records_of(lines):
        assert allowed.fullmatch(str(record["message"])), record


@pytest.mark.kernel
def test_hello_tail_text_and_count(request: pytest.FixtureRequest) -> None:
    hello_tail = app(request, "hello_tail", "--count", "2", "--duration", str(BOUND))
    deadline = time.monotonic() + WAIT
    while hello_tail.proc.poll() is None and time.monotonic() < deadline:
        posix_timer()
        time.sleep(0.1)
    code, stderr = hello_tail.finish()
    assert code == 0, stderr
    assert len(hello_tail.lines) == 2
    for line in hello_tail.lines:
        m = TRACE_LINE.match(line)
        assert m, f"not a trace_pipe line: {line!r}"
        # Without --print-syscall only execs and timer syscalls produce lines.
        assert m["message"] in (
            "Executing a program",
            "Creating a timer",
            "Deleting a timer",
            "Some other timer operation",
        )


def test_hello_tail_rejects_out_of_range_syscall() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "examples.hello_tail", "--print-syscall", "500"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 2
    assert "syscall number must be in 0..499: 500" in proc.stderr
