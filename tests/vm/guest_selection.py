"""The VM tier's guest test selection, loaded inside the guest with ``-p``.

Software emulation makes every guest second count (CI budget: ~25 min for three kernels),
and the host tier already runs every tracepoint path. So the guest runs only what needs a
kernel other than the host's: the kprobe tests everywhere, plus the runtime's kernel tier
(tests/test_runtime_*.py), whose feature expectations differ per kernel, and the twins of
tests/test_examples_tracing.py (kprobes, fentry). The examples' tracepoint variants stay on
the host.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

import pytest

# Files whose ``kernel``-marked tests also run in the guest; elsewhere only ``kprobe`` ones.
KERNEL_TIER_PREFIX = "tests/test_runtime_"
# The example twins that need kprobes or trampolines: the host only sees their refusal.
KERNEL_TIER_FILES = {"tests/test_examples_tracing.py"}


# Host tier only, with the reason: what they check does not vary by kernel, and the guests
# cannot give it. In the 6.1 guest under qemu's TCG, bpf_get_stackid() returned -EFAULT (the
# kernel fetched no call chain) where the host records the stack; the symbolizer and the
# per-key fallback these tests check are user-space code, which the host tier covers.
HOST_ONLY = {
    "tests/test_runtime_kinds.py::test_kernel_stack_symbolized": "no kernel stacks under TCG",
    "tests/test_runtime_batch.py::test_kernel_without_batch_falls_back_per_key":
        "no kernel stacks under TCG",
}


def _wanted(item: pytest.Item) -> bool:
    if item.nodeid in HOST_ONLY:
        return False
    if item.get_closest_marker("kprobe"):
        return True
    path = item.nodeid.split("::", 1)[0]
    in_tier = path.startswith(KERNEL_TIER_PREFIX) or path in KERNEL_TIER_FILES
    return in_tier and item.get_closest_marker("kernel") is not None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [item for item in items if _wanted(item)]
    dropped = [item for item in items if not _wanted(item)]
    for item in dropped:
        if item.nodeid in HOST_ONLY:
            print(f"host tier only: {item.nodeid} ({HOST_ONLY[item.nodeid]})")
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# A guest test that hangs must cost one test, not the guest: with no bound, CI saw the 5.10
# guest still running when the host's 30-minute budget ran out, and learnt nothing of where.
# SIGALRM fails the test that runs too long (epoll_wait and friends return EINTR, so a test
# blocked in libbpf through ctypes gets the exception when the call comes back); every
# thread's stack goes to the log first. A process stuck where no signal handler can run
# (a thread holding the GIL in C) is ended by faulthandler after the grace period, its
# stacks in the log, and the host then reports the log's last lines.
TEST_TIMEOUT = float(os.environ.get("EBPF_GEN_GUEST_TEST_TIMEOUT", "240"))
GRACE = 60.0


class GuestTestTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write(f"\n--- guest test ran over {TEST_TIMEOUT:.0f}s; every thread:\n")
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    raise GuestTestTimeout(f"ran over {TEST_TIMEOUT:.0f}s in the guest (stacks in the log)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # The whole protocol (setup, call, teardown): a fixture can hang as well as a test.
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    faulthandler.dump_traceback_later(TEST_TIMEOUT + GRACE, exit=True, file=sys.__stderr__)
    try:
        return (yield)
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
