"""The VM tier's guest test selection, loaded inside the guest with ``-p``.

Software emulation makes every guest second count (CI budget: ~25 min for three kernels),
and the host tier already runs every tracepoint path. So the guest runs only what needs a
kernel other than the host's: the kprobe tests everywhere, plus the runtime's kernel tier
(tests/test_runtime_*.py), whose feature expectations differ per kernel. The examples'
tracepoint variants stay on the host.
"""

from __future__ import annotations

import pytest

# Files whose ``kernel``-marked tests also run in the guest; elsewhere only ``kprobe`` ones.
KERNEL_TIER_PREFIX = "tests/test_runtime_"


def _wanted(item: pytest.Item) -> bool:
    if item.get_closest_marker("kprobe"):
        return True
    path = item.nodeid.split("::", 1)[0]
    return path.startswith(KERNEL_TIER_PREFIX) and item.get_closest_marker("kernel") is not None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept = [item for item in items if _wanted(item)]
    dropped = [item for item in items if not _wanted(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
