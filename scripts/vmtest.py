"""Boot stock Debian kernels under qemu (virtme-ng, no KVM) and run the kernel tier inside.

    scripts/vmtest.py [--pytest-args "..."] KERNEL...   (KERNEL: 5.10, 6.1, 6.12)

One boot per kernel: the guest sees this checkout read-only at the same path (so the
.venv, clang and libbpf are the host's), runs `pytest -m "kernel or kprobe"` with
EBPF_GEN_VM_KERNEL set, and writes junit XML into a per-run directory shared read-write.
The host then prints one PASS/FAIL line per guest test. Exit status: 0 when every guest
test passed on every kernel, 1 when a test failed, 2 when a kernel couldn't be fetched
or booted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERNELS = ("5.10", "6.1", "6.12")
VM_DIR = REPO / ".vm"
# Software emulation: boots take 20-45 s; the budget covers boot, the feature probe and
# the guest's kernel/kprobe tiers.
# Per guest, boot to power-off. Guests run side by side (VMTEST_JOBS), each on one TCG
# thread, so a guest gets about one host core at best and less while the host works too.
BOOT_TIMEOUT = float(os.environ.get("VMTEST_TIMEOUT", "1800"))


class VmError(Exception):
    """A kernel couldn't be fetched or booted, or the guest produced no results."""


@dataclass(frozen=True)
class CaseResult:
    name: str  # nodeid-like: tests/test_x.py::test_y[param]
    outcome: str  # passed | failed | error | skipped
    message: str
    seconds: float


@dataclass(frozen=True)
class KernelRun:
    kernel: str
    uname: str
    cases: tuple[CaseResult, ...]
    features: dict[str, dict[str, object]]
    total_seconds: float  # the whole vng invocation
    test_seconds: float  # pytest's own wall time in the guest (from the junit XML)
    pytest_rc: int
    log: str
    note: str = ""  # something the host had to do that the results don't show

    @property
    def ok(self) -> bool:
        return self.pytest_rc in (0, 5) and all(
            c.outcome in ("passed", "skipped") for c in self.cases
        )


def find_vng() -> str:
    """vng of the Python running this script, of the .venv, or else from PATH.

    The project's own install comes first: a vng installed elsewhere on this machine once
    made CI green where a new user's failed (see vng_env).
    """
    for cand in (Path(sys.executable).parent / "vng", REPO / ".venv/bin/vng", shutil.which("vng")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
    raise VmError("vng (virtme-ng) not found: run scripts/setup.sh or `pip install virtme-ng`")


def vng_env(vng: str) -> dict[str, str]:
    """The environment vng runs in: its own bin directory first on PATH.

    vng starts its helpers (virtme-run, virtme-init's tools) through PATH, and a venv's bin
    is not on PATH unless the venv is activated: without this, a vng from .venv fails with
    "/bin/sh: 1: virtme-run: not found" (exit 127) on a machine with no other virtme-ng.
    """
    path = os.environ.get("PATH", os.defpath)
    return {**os.environ, "PATH": f"{Path(vng).parent}{os.pathsep}{path}"}


def missing_host_tools() -> str | None:
    """Why the VM tier can't run here, or None."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
    if shutil.which("busybox") is None:
        return "busybox not installed (apt-get install busybox-static): virtme-ng's guest init"
    try:
        find_vng()
    except VmError as e:
        return str(e)
    return None


def fetch_kernel(kernel: str) -> Path:
    """The vmlinuz of Debian's kernel for `kernel`, downloaded once into .vm/kernels/."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/vm/fetch-kernel.sh"), kernel],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise VmError(f"kernel {kernel}: fetch failed: {proc.stderr.strip()}")
    kdir = Path(proc.stdout.strip().splitlines()[-1])
    images = sorted((kdir / "boot").glob("vmlinuz-*"))
    if not images:
        raise VmError(f"kernel {kernel}: no boot/vmlinuz-* in {kdir}")
    return images[-1]


def _parse_junit(path: Path) -> tuple[list[CaseResult], float]:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    cases: list[CaseResult] = []
    for suite in suites:
        for tc in suite.iter("testcase"):
            # classname is dotted (tests.test_x or tests.test_x.TestY); the file is the
            # leading part that is a module under the repo.
            parts = tc.get("classname", "").split(".")
            for i in range(len(parts), 0, -1):
                if (REPO / Path(*parts[:i])).with_suffix(".py").exists():
                    tail = "::".join([*parts[i:], tc.get("name", "")])
                    nodeid = "/".join(parts[:i]) + ".py::" + tail
                    break
            else:
                nodeid = f"{tc.get('classname')}::{tc.get('name')}"
            outcome, message = "passed", ""
            for tag in ("failure", "error", "skipped"):
                el = tc.find(tag)
                if el is not None:
                    outcome = "failed" if tag == "failure" else tag
                    message = (el.get("message") or "").strip() or (el.text or "").strip()
                    if tag != "skipped" and el.text:
                        message = f"{message}\n{el.text.strip()}"
                    break
            cases.append(CaseResult(nodeid, outcome, message, float(tc.get("time", "0"))))
    total = sum(float(s.get("time", "0")) for s in suites)
    return cases, total


SKELETONS = VM_DIR / "skeletons"
RUNTIME_TESTS = tuple(
    str(p.relative_to(REPO)) for p in sorted((REPO / "tests").glob("test_runtime_*.py"))
)
_prewarmed: list[bool] = []


def prewarm_skeletons() -> None:
    """Build the runtime tests' skeletons on the host, once per process, for the guests.

    clang under software emulation costs ~25 s a skeleton; the built objects and modules
    don't depend on the kernel, so the guests load these (tests/conftest.py,
    EBPF_GEN_SKELETON_CACHE). Built by running the host's runtime kernel tier: its results
    are not this tier's business (the host tier reports them), so they are not checked; a
    skeleton missing here is simply built in the guest.
    """
    if _prewarmed:
        return
    _prewarmed.append(True)
    shutil.rmtree(SKELETONS, ignore_errors=True)  # stale generator versions go with it
    SKELETONS.mkdir(parents=True)
    # A prewarm cut short by its timeout only leaves the rest for the guests to build.
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "kernel",
             *RUNTIME_TESTS],
            cwd=REPO, env={**os.environ, "EBPF_GEN_SKELETON_CACHE": str(SKELETONS)},
            capture_output=True, check=False, stdin=subprocess.DEVNULL, timeout=600,
        )


POWEROFF_GRACE = 120.0  # seconds a guest gets to power off once its results are written


def _run_guest(cmd: list[str], env: dict[str, str], done: Path
               ) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run vng in a session of its own until it exits, or kill the whole session.

    subprocess.run's timeout kills only vng, its direct child: the qemu under it went on
    emulating a hung guest, a host core busy for the rest of the run (a fourth qemu was seen
    next to the three of a later tier, and every guest after it slowed). Once the guest has
    written ``done`` (its results are complete) it gets POWEROFF_GRACE to power off; a
    guest that hangs in shutdown is killed and its results stand, with a note saying so.
    Returns the process and that note ("" normally); raises TimeoutExpired when the guest
    ran out of BOOT_TIMEOUT without results.
    """
    start = time.monotonic()
    deadline = start + BOOT_TIMEOUT
    ended = 0.0  # when the results appeared
    note = ""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        text=True, env=env, start_new_session=True,
    ) as proc:
        # communicate() keeps what it read between its timeouts, so calling it again in a
        # loop loses no output.
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=2.0)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if not ended and done.exists():
                    ended = now
                    deadline = min(deadline, now + POWEROFF_GRACE)
                if now < deadline:
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
                if not ended:
                    raise subprocess.TimeoutExpired(cmd, BOOT_TIMEOUT, stdout, stderr) from None
                note = (f"the guest's tests ended after {ended - start:.0f}s but it did not "
                        f"power off within {POWEROFF_GRACE:.0f}s: killed")
                break
        return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), note


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _tails(out: Path, console: str) -> str:
    """The last lines of the guest's pytest log and console, for a run that gave no results."""
    log_path = out / "pytest.log"
    log = log_path.read_text(errors="replace") if log_path.exists() else "(no pytest.log)"
    log_tail = "\n".join(log.strip().splitlines()[-60:])
    console_tail = "\n".join(console.strip().splitlines()[-30:])
    return (f"-- guest pytest log, last lines:\n{log_tail}\n"
            f"-- guest console, last lines:\n{console_tail}")


def run_kernel(kernel: str, pytest_args: tuple[str, ...] = ()) -> KernelRun:
    """Boot `kernel` once, run the guest tier, and collect its results."""
    why = missing_host_tools()
    if why:
        raise VmError(why)
    vmlinuz = fetch_kernel(kernel)
    out = VM_DIR / "out" / f"{kernel}-{os.getpid()}-{time.monotonic_ns()}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # Compiled on the host: clang under software emulation would cost minutes.
    sys.path.insert(0, str(REPO))
    from tests.vm.feature_probe import compile_all

    compile_all(out / "features-build")
    prewarm_skeletons()
    guest_cmd = shlex.join(
        ["sh", str(REPO / "scripts/vm/guest.sh"), str(out), kernel, *pytest_args]
    )
    vng = find_vng()
    cmd = [
        # --verbose: the kernel's console lands in console.log, so a guest that dies
        # (panic, OOM) says why.
        vng, "--disable-kvm", "--force-9p", "--verbose", "--run", str(vmlinuz),
        "--memory", "2G", "--cpus", "2", "--rwdir", str(out), "--rwdir", str(SKELETONS),
        # One TCG thread for both vCPUs. With qemu's default multi-threaded TCG, a guest
        # that live-patches its own text (static keys flipped when a probe attaches) can
        # run a stale int3 on the other vCPU: "Oops: int3" in __schedule, a kernel panic,
        # seen on 6.12 in about one run in three. Two vCPUs stay, for the per-CPU paths.
        "--qemu-opts=-accel tcg,thread=single",
        "--cwd", str(REPO),
        "--exec", guest_cmd,
    ]
    start = time.monotonic()
    try:
        proc, note = _run_guest(cmd, vng_env(vng), out / "rc")
        console = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        # What the guest got to: its pytest log (-v, one line a test, stacks of a test that
        # ran over its bound) and the console, so a hang says where it hung.
        console = _text(e.stdout) + _text(e.stderr)
        (out / "console.log").write_text(console)
        raise VmError(
            f"kernel {kernel}: guest still running after {BOOT_TIMEOUT:.0f}s; output in {out}\n"
            + _tails(out, console)
        ) from e
    total = time.monotonic() - start
    (out / "console.log").write_text(console)
    rc_file, junit = out / "rc", out / "junit.xml"
    log = (out / "pytest.log").read_text() if (out / "pytest.log").exists() else ""
    if not rc_file.exists() or not junit.exists():
        raise VmError(
            f"kernel {kernel}: the guest produced no results (boot failed?); "
            f"vng exit {proc.returncode}, output in {out}\n" + _tails(out, console)
        )
    cases, test_seconds = _parse_junit(junit)
    try:
        features = json.loads((out / "features.json").read_text())
    except (OSError, ValueError):
        features = {}
    return KernelRun(
        kernel=kernel,
        uname=(out / "uname").read_text().strip(),
        cases=tuple(cases),
        features=features,
        total_seconds=total,
        test_seconds=test_seconds,
        pytest_rc=int(rc_file.read_text().strip() or "1"),
        log=log,
        note=note,
    )


def report_lines(run: KernelRun) -> list[str]:
    boot = run.total_seconds - run.test_seconds
    lines = [f"== kernel {run.kernel} ({run.uname}): boot+probe {boot:.0f}s, "
             f"tests {run.test_seconds:.0f}s, {len(run.cases)} test(s)"]
    for c in run.cases:
        lines.append(f"{c.outcome.upper():7} [{run.kernel}] {c.name}")
        if c.outcome in ("failed", "error", "skipped") and c.message:
            lines.extend("        " + m for m in c.message.splitlines()[:40])
    missing = sorted(k for k, v in run.features.items() if not v.get("present"))
    lines.append(f"   kernel {run.kernel} lacks: {', '.join(missing) or 'nothing probed'}")
    if run.note:
        lines.append(f"   note: {run.note}")
    if run.pytest_rc not in (0, 1, 5):
        lines.append(f"   guest pytest exit {run.pytest_rc}:")
        lines.extend("        " + m for m in run.log.strip().splitlines()[-20:])
    return lines


def run_kernels(
    kernels: Sequence[str], pytest_args: tuple[str, ...] = (), jobs: int | None = None
) -> dict[str, KernelRun | VmError]:
    """Boot each kernel and run its guest tier, up to ``jobs`` guests at a time.

    Each guest runs qemu with one TCG thread (see run_kernel), so one guest keeps one host
    core busy: on a 2-core host, two guests side by side halve the VM tier's wall time. The
    skeleton cache is filled once, before any guest starts, so they only read it.
    """
    from concurrent.futures import ThreadPoolExecutor

    if jobs is None:
        jobs = int(os.environ.get("VMTEST_JOBS", "0")) or os.cpu_count() or 1
    why = missing_host_tools()
    if why:
        return {k: VmError(why) for k in kernels}
    prewarm_skeletons()

    def one(kernel: str) -> KernelRun | VmError:
        try:
            return run_kernel(kernel, pytest_args)
        except VmError as e:
            return e

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(kernels)))) as pool:
        return dict(zip(kernels, pool.map(one, kernels), strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kernels", nargs="*", default=list(KERNELS), metavar="KERNEL")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments for the guest")
    ap.add_argument("--features-json", type=Path, help="write every kernel's probe results here")
    args = ap.parse_args(argv)
    status, features = 0, {}
    unknown = [k for k in args.kernels if k not in KERNELS]
    if unknown:
        print(f"vmtest: unknown kernel {unknown[0]!r} (want one of {', '.join(KERNELS)})",
              file=sys.stderr)
        return 2
    results = run_kernels(args.kernels, tuple(shlex.split(args.pytest_args)))
    for kernel, run in results.items():
        if isinstance(run, VmError):
            print(f"vmtest: {run}", file=sys.stderr)
            status = 2
            continue
        print("\n".join(report_lines(run)), flush=True)
        features[kernel] = run.features
        if not run.ok and status == 0:
            status = 1
    if args.features_json:
        args.features_json.write_text(json.dumps(features, indent=1, sort_keys=True) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
