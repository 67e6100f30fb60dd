"""The VM tier from the host: boot each stock Debian kernel once, run the kernel and kprobe
tiers inside, and fail with every failing guest test's name and message.

Kernels: VM_KERNELS (space separated, default "5.10 6.1 6.12"). Each boot runs the
guest's whole tier; the feature probe's results must match tests/vm/kernel_features.py.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import IN_CI, REPO, VM_KERNEL, need
from tests.vm.kernel_features import FEATURES


@functools.cache  # one module per session: its once-per-run state (skeleton prewarm) holds
def _vmtest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vmtest", REPO / "scripts/vmtest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["vmtest"] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


KERNELS = os.environ.get("VM_KERNELS", "5.10 6.1 6.12").split()


@functools.cache  # every kernel booted once per session, side by side (scripts/vmtest.py)
def _runs() -> dict[str, Any]:  # KernelRun | VmError of a module loaded by path
    return dict(_vmtest().run_kernels(KERNELS))


@pytest.mark.vm
@pytest.mark.parametrize("kernel", KERNELS)
def test_guest_tier_passes(kernel: str, capsys: pytest.CaptureFixture[str]) -> None:
    if VM_KERNEL:
        pytest.skip("already inside a VM")  # deselected by marker anyway; never nest qemu
    vmtest = _vmtest()
    need(vmtest.missing_host_tools())
    if os.geteuid() != 0:
        need("the VM tier needs root (the guest runs the kernel tier as root)")
    run = _runs()[kernel]
    if isinstance(run, vmtest.VmError):
        # A kernel that can't be fetched (no mirror) is an absent requirement; under CI,
        # need() turns it into a failure.
        if "fetch failed" in str(run) and not IN_CI:
            pytest.skip(str(run))
        pytest.fail(str(run))
    report = "\n".join(vmtest.report_lines(run))
    # Shown even when the test passes: the guest's pass/fail lines are the VM tier's proof
    # (kprobe attach and events on each kernel), and CI's log should carry them.
    with capsys.disabled():
        print(f"\n{report}")
    bad = [c for c in run.cases if c.outcome in ("failed", "error")]
    assert run.cases, f"kernel {kernel}: the guest ran no tests\n{run.log[-3000:]}"
    assert not bad and run.ok, f"kernel {kernel}: {len(bad)} guest test(s) failed\n{report}"
    probed = {name: bool(v.get("present")) for name, v in run.features.items()}
    assert probed == FEATURES[kernel], (
        f"kernel {kernel}: feature probe disagrees with tests/vm/kernel_features.py:\n"
        + "\n".join(f"  {k}: table {FEATURES[kernel].get(k)}, probed {probed.get(k)} "
                    f"({run.features.get(k, {}).get('detail')})"
                    for k in sorted(set(probed) | set(FEATURES[kernel]))
                    if probed.get(k) != FEATURES[kernel].get(k))
    )


def test_vng_helpers_resolve_without_an_activated_venv() -> None:
    """vng runs virtme-run through PATH; the venv's bin is not on PATH in CI or for a user
    who did not activate it, so the VM tier must put it there (CI was once green only
    because another virtme-ng sat on this machine's PATH)."""
    import shutil

    vmtest = _vmtest()
    vng = vmtest.find_vng()
    env = vmtest.vng_env(vng)
    first = env["PATH"].split(os.pathsep)[0]
    assert first == str(os.path.dirname(vng))
    helper = shutil.which("virtme-run", path=env["PATH"])
    assert helper is not None and os.path.dirname(helper) == first


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs 5 s from now: a killed process closes its files (which
    ends communicate()) a moment before it is gone."""
    import time

    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:  # reaped
            return False
        if state in ("Z", "X"):  # exited, only not yet reaped
            return False
        time.sleep(0.05)
    return True


def _guest_like(tmp_path: Any, write_done: bool) -> list[str]:
    """A stand-in for vng: a child (qemu's place) that outlives a kill of its parent alone."""
    script = "sleep 600 & echo $! > {pid}; {done} wait".format(
        pid=tmp_path / "pid", done=f"echo 0 > {tmp_path / 'rc'};" if write_done else "")
    return ["sh", "-c", script]


def test_guest_hung_in_shutdown_keeps_its_results(tmp_path: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Results written and then no power-off: the whole session is killed after the grace
    period and the run is reported with a note, not as a timeout."""
    import subprocess
    import time

    vmtest = _vmtest()
    monkeypatch.setattr(vmtest, "POWEROFF_GRACE", 1.0)
    start = time.monotonic()
    proc, note = vmtest._run_guest(_guest_like(tmp_path, True), dict(os.environ),
                                   tmp_path / "rc")
    assert time.monotonic() - start < 30
    assert "did not power off" in note and proc.returncode != 0
    assert not _alive(int((tmp_path / "pid").read_text()))
    assert isinstance(proc, subprocess.CompletedProcess)


def test_guest_timeout_kills_every_process_of_the_guest(tmp_path: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    vmtest = _vmtest()
    monkeypatch.setattr(vmtest, "BOOT_TIMEOUT", 1.0)
    with pytest.raises(subprocess.TimeoutExpired):
        vmtest._run_guest(_guest_like(tmp_path, False), dict(os.environ), tmp_path / "rc")
    assert not _alive(int((tmp_path / "pid").read_text()))
