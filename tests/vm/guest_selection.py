"""The VM tier's guest test selection, loaded inside the guest with ``-p``.

Software emulation makes every guest second count (CI budget: ~25 min for three kernels),
and the host tier already runs every tracepoint path. So the guest runs only what needs a
kernel other than the host's: the kprobe tests everywhere, plus the runtime's kernel tier
(tests/test_runtime_*.py), whose feature expectations differ per kernel, and the twins of
tests/test_examples_tracing.py (kprobes, fentry). The examples' tracepoint variants stay on
the host.
"""

from __future__ import annotations

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
