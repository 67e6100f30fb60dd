"""Test tiers and their requirements.

Tiers: unit (no marker), ``kernel`` (root + bpf() on the host), ``kprobe`` (a kernel with
kprobes: runs inside ``make vmtest``), ``vm`` (boots qemu). A test may skip only when its
requirement is truly absent, with the reason printed; under CI (``CI=true``) a kernel or VM
requirement that is absent is a failure, not a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent
# A socket that waits for traffic a program dropped, or a send that a sockmap program holds,
# must fail its test, not hang the run (the VM tier's guest has no one to interrupt it).
# Tests that want a shorter wait set their own.
socket.setdefaulttimeout(30.0)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Set by scripts/vmtest.py inside the guest: the Debian kernel series being tested.
VM_KERNEL = os.environ.get("EBPF_GEN_VM_KERNEL", "")


def pytest_configure(config: pytest.Config) -> None:
    # The tests must test this checkout: an install of another tree (a venv made for an
    # older layout, or for another clone) would let them pass or fail on code that is not
    # the code under review.
    import importlib.util

    spec = importlib.util.find_spec("ebpf_gen")
    where = Path(spec.origin).resolve().parent if spec and spec.origin else None
    if where != REPO / "gen" / "ebpf_gen":
        pytest.exit(
            f"ebpf_gen imports from {where}, not this checkout's gen/ebpf_gen: "
            "reinstall it (bash scripts/setup.sh, or .venv/bin/python -m pip install -e '.[dev]')",
            returncode=4,
        )


def _missing_kernel_requirement() -> str | None:
    if os.geteuid() != 0:
        return "needs root (bpf() with CAP_BPF/CAP_SYS_ADMIN)"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    return None


def kprobes_available() -> bool:
    return Path("/sys/bus/event_source/devices/kprobe").exists()


def need(reason: str | None) -> None:
    """Skip with ``reason`` when a requirement is absent; fail instead under CI."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"requirement missing under CI (a skip would hide it): {reason}")
    pytest.skip(reason)


def require_kernel() -> None:
    need(_missing_kernel_requirement())


def require_tool(name: str) -> str:
    path = shutil.which(name)
    need(None if path else f"{name} not installed (scripts/setup.sh installs it)")
    assert path is not None
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests for the other kind of kernel are deselected with the reason shown rather than
    # skipped (under CI a skip is a failure): kprobe tests run inside `make vmtest` when the
    # host has no kprobes; nokprobe tests (the "kprobes unavailable" paths) run on the host.
    if kprobes_available():
        marker, why = "nokprobe", "this kernel has kprobes; the host tier covers kernels without"
    else:
        marker, why = "kprobe", "this kernel has no kprobes (CONFIG_KPROBES off); they run " \
            "inside `make vmtest`"
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (dropped if item.get_closest_marker(marker) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"deselected {len(dropped)} {marker} test(s): {why}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if any(item.get_closest_marker(m) for m in ("kernel", "kprobe", "nokprobe")):
        require_kernel()


@pytest.fixture(scope="session")
def clang() -> str:
    return require_tool("clang")


def compile_bpf(
    src: Path, out: Path, *, target: str = "bpfel", extra: tuple[str, ...] = ()
) -> Path:
    """Compile a BPF C file the way tests need it (not the product's reproducible flags)."""
    cmd = [
        "clang", "-O2", "-g", "-target", target, "-D__TARGET_ARCH_x86",
        "-I/usr/include/x86_64-linux-gnu", *extra, "-c", str(src), "-o", str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"clang failed: {' '.join(cmd)}\n{proc.stderr}")
    return out


@pytest.fixture(scope="session")
def skeleton(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], ModuleType]:
    """Build (clang + the ebpf-gen CLI) and import a skeleton from BPF C text:
    ``skeleton("name", source)`` -> the generated module (cached per session)."""
    import importlib
    import sys

    root = tmp_path_factory.mktemp("skeletons")
    package = f"skel_{os.getpid()}"
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    built: dict[str, ModuleType] = {}

    def build(name: str, source: str) -> ModuleType:
        if name not in built:
            cached = _skeleton_cache_dir(name, source)
            if cached is None or not cached.is_dir():
                stage = root / f"stage-{name}"
                stage.mkdir()
                src = root / f"{name}.bpf.c"
                src.write_text(source)
                cmd = [sys.executable, "-m", "ebpf_gen.cli", str(src), "--output-dir",
                       str(stage), "--", "-I/usr/include/x86_64-linux-gnu"]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
                if cached is not None:
                    _store_skeleton(stage, cached)
            else:
                stage = cached
            for f in stage.iterdir():
                shutil.copy2(f, root / package / f.name)
            built[name] = importlib.import_module(f"{package}.{name}")
        return built[name]

    return build


# --- skeleton cache (VM tier) -----------------------------------------------------------
# A skeleton (clang's objects + the generated module) doesn't depend on the running kernel,
# and under software emulation one build costs ~25 s. So the VM tier points
# EBPF_GEN_SKELETON_CACHE at a directory the host fills first (scripts/vmtest.py); the
# guest then loads exactly what the host built. Unset (the host tier): always build.
SKELETON_CACHE = os.environ.get("EBPF_GEN_SKELETON_CACHE", "")


def _generator_fingerprint() -> str:
    """Changes whenever anything that shapes a skeleton does: generator, templates, clang."""
    import hashlib

    h = hashlib.sha256()
    for top in ("gen", "templates"):
        for f in sorted((REPO / top).rglob("*")):
            if f.is_file() and f.suffix in (".py", ".j2", ".jinja", ".tmpl", ".txt"):
                h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    clang = shutil.which("clang")
    if clang:
        # Not the mtime: the guest sees the host's files through 9p, which rounds it.
        real = Path(clang).resolve()
        h.update(f"{real}:{real.stat().st_size}".encode())
    return h.hexdigest()


_FINGERPRINT: list[str] = []


def _skeleton_cache_dir(name: str, source: str) -> Path | None:
    if not SKELETON_CACHE:
        return None
    import hashlib

    if not _FINGERPRINT:
        # The first user of a cache directory records the fingerprint and later ones (the
        # guests, moments later, on the same tree) adopt it: hashing gen/ over 9p is slow,
        # and a guest that saw the tree differently would never hit.
        stamp = Path(SKELETON_CACHE) / "FINGERPRINT"
        try:
            _FINGERPRINT.append(stamp.read_text().strip())
        except OSError:
            _FINGERPRINT.append(_generator_fingerprint())
            with contextlib.suppress(OSError):
                stamp.write_text(_FINGERPRINT[0] + "\n")
    key = hashlib.sha256(f"{_FINGERPRINT[0]}\0{name}\0{source}".encode()).hexdigest()[:24]
    return Path(SKELETON_CACHE) / f"{name}-{key}"


def _store_skeleton(stage: Path, cached: Path) -> None:
    """Publish a fresh build; a read-only or racing cache just leaves it uncached."""
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
    try:
        shutil.copytree(stage, tmp)
        tmp.rename(cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
