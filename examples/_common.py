"""What the four chapter-2 apps share: flags, root check, kprobe-or-tracepoint choice, output.

Each app is ``main(argv) -> int`` wrapped by :func:`run`, which turns the expected failures
(not root, no kprobes, libbpf refusing) into one line on stderr and exit 1, and Ctrl-C or
SIGTERM into a clean exit 0 after the ``with`` blocks have detached every link.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from ebpf_gen.runtime import TraceRecord, trace_pipe
from ebpf_gen.runtime import errors as rt_errors

TRACEFS = Path("/sys/kernel/tracing")
EXECVE_TRACEPOINT = ("syscalls", "sys_enter_execve")


class Fatal(Exception):
    """A problem the user can fix: printed as one line, exit code 1."""


class Attach(enum.Enum):
    KPROBE = "kprobe"
    TRACEPOINT = "tracepoint"


def parser(
    prog: str, description: str, *, count: bool = True, attach: bool = True
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    if count:
        p.add_argument(
            "--count", type=_positive_int, metavar="N", help="stop after printing N events"
        )
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    if attach:
        p.add_argument(
            "--attach",
            choices=[m.value for m in Attach] + ["auto"],
            default="auto",
            help="kprobe on the execve syscall, the sys_enter_execve tracepoint, or "
            "auto: the kprobe when the kernel has kprobes (default)",
        )
    return p


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return value


def kprobes_available() -> bool:
    # The kprobe PMU exists on every kernel with kprobes since 4.17; older ones only have
    # the tracefs interface, which libbpf also falls back to.
    return (
        Path("/sys/bus/event_source/devices/kprobe/type").exists()
        or (TRACEFS / "kprobe_events").exists()
        or Path("/sys/kernel/debug/tracing/kprobe_events").exists()
    )


def choose_attach(requested: str) -> Attach:
    if requested == Attach.TRACEPOINT.value:
        return Attach.TRACEPOINT
    if kprobes_available():
        return Attach.KPROBE
    if requested == Attach.KPROBE.value:
        raise Fatal(
            "--attach kprobe: this kernel has no kprobes (CONFIG_KPROBES is off); "
            "use --attach tracepoint"
        )
    category, name = EXECVE_TRACEPOINT
    print(
        f"kprobes unavailable on this kernel: attaching to tracepoint {category}/{name} instead",
        file=sys.stderr,
        flush=True,
    )
    return Attach.TRACEPOINT


def require_root() -> None:
    if os.geteuid() != 0:
        raise Fatal("needs root to load BPF programs (CAP_BPF, CAP_PERFMON): run it with sudo")


def ensure_tracefs() -> None:
    """Tracepoint ids and the trace pipe live in tracefs, which minimal systems leave unmounted."""
    if (TRACEFS / "events").is_dir() or Path("/sys/kernel/debug/tracing/events").is_dir():
        return
    if os.system(f"mount -t tracefs nodev {TRACEFS} 2>/dev/null") != 0:
        raise Fatal(f"tracefs is not mounted and mounting it on {TRACEFS} failed")


class Budget:
    """When to stop: after --duration seconds and/or --count events, whichever comes first."""

    def __init__(self, duration: float | None, count: int | None = None) -> None:
        self._deadline = None if duration is None else time.monotonic() + duration
        self._left = count

    def remaining(self, cap: float) -> float:
        """Seconds to wait for the next event: at most ``cap``, never past the deadline."""
        if self._deadline is None:
            return cap
        return max(0.0, min(cap, self._deadline - time.monotonic()))

    def spend(self) -> None:
        if self._left is not None:
            self._left -= 1

    @property
    def exhausted(self) -> bool:
        if self._left is not None and self._left <= 0:
            return True
        return self._deadline is not None and time.monotonic() >= self._deadline


def emit(as_json: bool, record: dict[str, object], text: str) -> None:
    # flush: the output is often a pipe (tests, `| grep`), which Python would block-buffer.
    print(json.dumps(record) if as_json else text, flush=True)


@contextmanager
def _pipe(idle_timeout: float) -> Iterator[Iterator[TraceRecord]]:
    records = trace_pipe(timeout=idle_timeout)
    try:
        yield records
    finally:
        # The generator holds trace_pipe open until closed: release it now, not at GC.
        close = getattr(records, "close", None)
        if close is not None:
            close()


def trace_records(budget: Budget, accept: Callable[[str], object]) -> Iterator[TraceRecord]:
    """This app's bpf_printk records from the trace pipe, until ``budget`` runs out.

    The pipe is shared by every BPF program on the machine, so ``accept`` picks this app's
    messages; reading consumes the others too, as any trace_pipe reader does.
    """
    while not budget.exhausted:
        # trace_pipe's timeout is an idle timeout: reopen every half second at most so
        # that --duration is honoured on a quiet pipe, and check it per record on a busy one.
        with _pipe(budget.remaining(0.5)) as records:
            for record in records:
                if accept(record.message):
                    yield record
                if budget.exhausted:
                    return


def drain_trace_pipe(limit: float = 0.5) -> None:
    """Skip what the pipe already holds: lines written before this app attached are not its
    own, though they may carry its messages (left by an earlier run that stopped reading)."""
    give_up = time.monotonic() + limit
    with _pipe(0.02) as records:
        for _ in records:
            if time.monotonic() > give_up:
                return


def trace_line(record: TraceRecord) -> str:
    """The record laid out as trace_pipe shows it, which is what the book's apps print."""
    cpu = "???" if record.cpu is None else f"{record.cpu:03d}"
    ts = "" if record.timestamp is None else f"{record.timestamp:.6f}"
    return (
        f"{record.task:>16}-{record.pid or 0:<7} [{cpu}] {record.flags:5} {ts}: "
        f"bpf_trace_printk: {record.message}"
    )


def trace_json(record: TraceRecord) -> dict[str, object]:
    return {
        "task": record.task,
        "pid": record.pid,
        "cpu": record.cpu,
        "timestamp": record.timestamp,
        "message": record.message,
    }


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(prog: str, body: Callable[[], int]) -> int:
    """Run ``body`` and map the expected ways it ends to exit codes and one-line messages."""
    # SIGTERM takes the same path as Ctrl-C so that `kill` also detaches the links.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return body()
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # `app | head`: the reader left; nothing more to say.
        sys.stderr.close()
        return 0
    except Fatal as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except rt_errors.LoadError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except (rt_errors.RuntimeBPFError, PermissionError) as e:
        print(f"{prog}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
