"""Program handles and the links that attach them.

An attach that fails because the kernel lacks the facility (no kprobes, a tracepoint that
does not exist) says so in the AttachError, rather than passing on a bare errno.
"""

from __future__ import annotations

import ctypes
import errno as E
import os

from . import libbpf
from .errors import AttachError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Protocol

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
UPROBE_PMU = "/sys/bus/event_source/devices/uprobe"
TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


if TYPE_CHECKING:

    class LinkOwner(Protocol):
        """What a Program reports its links to (ObjectsBase), so close() detaches all."""

        def _track_link(self, link: Link) -> None: ...

        def _untrack_link(self, link: Link) -> None: ...


class Link:
    """An attachment; detaches on close() (idempotent) or when its objects close."""

    def __init__(self, ptr: int, program: Program, target: str) -> None:
        self._ptr: int | None = ptr
        self.program = program
        self.target = target

    @property
    def fd(self) -> int:
        return int(libbpf.lib().bpf_link__fd(self._ptr)) if self._ptr else -1

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is None:
            return
        libbpf.lib().bpf_link__destroy(ptr)
        if self.program.owner is not None:
            self.program.owner._untrack_link(self)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link on a bpffs: the program stays attached after this process exits,
        until ``unpin()`` (or the pin file is removed) and the last fd closes.
        ``ebpf_gen.runtime.open_pinned_link(path)`` takes it up again."""
        from .pinning import require_bpffs

        full = os.path.abspath(os.fspath(path))
        require_bpffs(os.path.dirname(full), f"link {self.target}")
        libbpf.check(libbpf.lib().bpf_link__pin(self._ptr, os.fsencode(full)),
                     f"link {self.program.name} -> {self.target}: pin at {full}")

    def unpin(self) -> None:
        libbpf.check(libbpf.lib().bpf_link__unpin(self._ptr), f"link {self.target}: unpin")

    def __enter__(self) -> Link:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"fd={self.fd}"
        return f"<Link {self.program.name} -> {self.target} {state}>"


def tracefs() -> str | None:
    """The mounted tracefs, if any."""
    for root in TRACEFS_ROOTS:
        if os.path.isdir(os.path.join(root, "events")):
            return root
    return None


def kprobes_unavailable() -> str | None:
    """Why kprobes cannot work on this kernel, or None when they might."""
    if os.path.exists(KPROBE_PMU):
        return None
    root = tracefs()
    if root is not None and os.path.exists(os.path.join(root, "kprobe_events")):
        return None
    return (
        f"kprobes are unavailable on this kernel: no kprobe PMU ({KPROBE_PMU}) and no "
        "kprobe_events in tracefs (kernel built without CONFIG_KPROBES/CONFIG_KPROBE_EVENTS)"
    )


def tracepoint_missing(category: str, name: str) -> str | None:
    root = tracefs()
    if root is None:
        return (
            "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing), so "
            f"tracepoint {category}/{name} cannot be found"
        )
    path = os.path.join(root, "events", category, name)
    if not os.path.isdir(path):
        return f"tracepoint {category}/{name} does not exist on this kernel (no {path})"
    return None


class Program:
    """A loaded BPF program: ``name``, ``section``, ``fd`` and attach methods."""

    def __init__(
        self,
        name: str,
        section: str,
        fd: int,
        *,
        ptr: int | None = None,
        owner: LinkOwner | None = None,
    ) -> None:
        self.name = name
        self.section = section
        self.fd = fd
        self._ptr = ptr  # struct bpf_program *, valid while the owning object is open
        self.owner = owner

    def __repr__(self) -> str:
        return f"<Program {self.name} section={self.section!r} fd={self.fd}>"

    # -- attach ---------------------------------------------------------------------------

    def _prog(self, target: str) -> int:
        if self._ptr is None or self.fd < 0:
            why = "not loaded (autoload off)" if self._ptr else "closed or not loaded"
            raise AttachError(f"cannot attach program {self.name!r} to {target}: {why}")
        return self._ptr

    def _link(self, ptr: int | None, target: str, diagnose: str | None) -> Link:
        if not ptr:
            err = ctypes.get_errno() or E.EINVAL
            base = f"attaching program {self.name!r} ({self.section}) to {target} failed"
            if err in (E.EPERM, E.EACCES):
                raise AttachError(f"{base}: permission denied: {libbpf.CAPABILITY_HINT}", errno=err)
            reason = diagnose or f"{os.strerror(err)} ({E.errorcode.get(err, err)})"
            raise AttachError(f"{base}: {reason}", errno=err)
        link = Link(ptr, self, target)
        if self.owner is not None:
            self.owner._track_link(link)
        return link

    def attach(self) -> Link:
        """Attach as the section says (ksyscall/, kprobe/, tracepoint/, raw_tp/, fentry/...)."""
        prog = self._prog(f"its section {self.section!r}")
        ptr = libbpf.lib().bpf_program__attach(prog)
        return self._link(ptr, self.section, None if ptr else self._diagnose_section())

    def _diagnose_section(self) -> str | None:
        kind, _, rest = self.section.partition("/")
        kind = kind.removesuffix(".s")
        if kind in (
            "kprobe",
            "kretprobe",
            "ksyscall",
            "kretsyscall",
            "kprobe.multi",
            "kretprobe.multi",
        ):
            return kprobes_unavailable()
        if kind in ("tracepoint", "tp"):
            category, _, name = rest.partition("/")
            return tracepoint_missing(category, name)
        if not rest and kind not in ("", "uprobe", "uretprobe", "usdt"):
            return (
                f"section {self.section!r} names no target: use attach_kprobe / "
                "attach_tracepoint / attach_raw_tracepoint / attach_uprobe"
            )
        return None

    def attach_kprobe(self, fn: str, retprobe: bool = False) -> Link:
        target = f"{'kretprobe' if retprobe else 'kprobe'} {fn}"
        prog = self._prog(target)
        ptr = libbpf.lib().bpf_program__attach_kprobe(prog, retprobe, fn.encode())
        diagnose = None
        if not ptr:
            diagnose = kprobes_unavailable()
            if diagnose is None and ctypes.get_errno() == E.ENOENT:
                diagnose = f"kernel function {fn!r} not found or not traceable"
        return self._link(ptr, target, diagnose)

    def attach_tracepoint(self, category: str, name: str) -> Link:
        target = f"tracepoint {category}/{name}"
        prog = self._prog(target)
        ptr = libbpf.lib().bpf_program__attach_tracepoint(prog, category.encode(), name.encode())
        return self._link(ptr, target, None if ptr else tracepoint_missing(category, name))

    def attach_raw_tracepoint(self, name: str) -> Link:
        target = f"raw tracepoint {name}"
        prog = self._prog(target)
        ptr = libbpf.lib().bpf_program__attach_raw_tracepoint(prog, name.encode())
        diagnose = None
        if not ptr and ctypes.get_errno() == E.ENOENT:
            diagnose = f"raw tracepoint {name!r} does not exist on this kernel"
        return self._link(ptr, target, diagnose)

    def attach_uprobe(
        self,
        binary: str | os.PathLike[str],
        symbol: str | int,
        pid: int = -1,
        retprobe: bool = False,
    ) -> Link:
        """Attach to ``symbol`` (a function name, or an offset into the file) in ``binary``."""
        path = os.fspath(binary)
        target = f"{'uretprobe' if retprobe else 'uprobe'} {path}:{symbol}"
        prog = self._prog(target)
        if not os.path.exists(path) and "/" in path:
            raise AttachError(f"attaching program {self.name!r} to {target}: no such file {path}")
        opts = libbpf.BpfUprobeOpts(sz=ctypes.sizeof(libbpf.BpfUprobeOpts), retprobe=retprobe)
        offset = 0
        if isinstance(symbol, int):
            offset = symbol
        else:
            opts.func_name = symbol.encode()
        ptr = libbpf.lib().bpf_program__attach_uprobe_opts(
            prog, pid, path.encode(), offset, ctypes.byref(opts)
        )
        diagnose = None
        if not ptr:
            if not os.path.exists(UPROBE_PMU):
                diagnose = f"uprobes are unavailable on this kernel (no {UPROBE_PMU})"
            elif ctypes.get_errno() == E.ENOENT and isinstance(symbol, str):
                diagnose = f"symbol {symbol!r} not found in {path}"
        return self._link(ptr, target, diagnose)
