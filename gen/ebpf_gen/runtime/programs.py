"""Program handles and the links that attach them.

An attach that fails because the kernel lacks the facility (no kprobes, a tracepoint that
does not exist) says so in the AttachError, rather than passing on a bare errno.
"""

from __future__ import annotations

import ctypes
import errno as E
import os

from . import libbpf, sections
from .errors import AttachError
from .links import Link as Link  # re-exported: programs.Link is where it used to live

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Protocol

    from .links import LinkGroup
    from .testrun import TestRunResult

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
UPROBE_PMU = "/sys/bus/event_source/devices/uprobe"
TRACEFS_ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


if TYPE_CHECKING:

    class LinkOwner(Protocol):
        """What a Program reports its links to (ObjectsBase), so close() detaches all."""

        def _track_link(self, link: Link) -> None: ...

        def _untrack_link(self, link: Link) -> None: ...


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

    @property
    def type(self) -> int:
        """The program type (enum bpf_prog_type), as libbpf decided it from the section."""
        return int(libbpf.lib().bpf_program__type(self._ptr)) if self._ptr else -1

    @property
    def expected_attach_type(self) -> int:
        """enum bpf_attach_type (e.g. BPF_CGROUP_INET_EGRESS for cgroup_skb/egress)."""
        if not self._ptr:
            return -1
        return int(libbpf.lib().bpf_program__expected_attach_type(self._ptr))

    def _fail(self, target: str, err: int, diagnose: str | None) -> AttachError:
        base = f"attaching program {self.name!r} ({self.section}) to {target} failed"
        # As root a refusal is the kernel's policy, not a missing capability: say which.
        if err in (E.EPERM, E.EACCES) and not (diagnose and os.geteuid() == 0):
            return AttachError(f"{base}: permission denied: {libbpf.CAPABILITY_HINT}", errno=err)
        reason = diagnose or f"{os.strerror(err)} ({E.errorcode.get(err, err)})"
        return AttachError(f"{base}: {reason}", errno=err)

    def _track(self, link: Link) -> Link:
        if self.owner is not None:
            self.owner._track_link(link)
        return link

    def _link(self, ptr: int | None, target: str, diagnose: str | None) -> Link:
        if not ptr:
            raise self._fail(target, ctypes.get_errno() or E.EINVAL, diagnose)
        return self._track(Link(ptr, self, target))

    def attach(self) -> Link:
        """Attach as the section says (ksyscall/, kprobe/, tracepoint/, raw_tp/, fentry/,
        lsm/, iter/, ...); a section that names no target raises AttachError saying which
        method and argument it needs (``xdp``: ``attach_xdp(interface)``)."""
        need = sections.needs(self.section)
        if need is not None:
            raise AttachError(
                f"cannot attach program {self.name!r}: section {self.section!r} names no "
                f"target: use {need}"
            )
        prog = self._prog(f"its section {self.section!r}")
        if sections.kind(self.section) == "lsm":
            return self.attach_lsm()
        ptr = libbpf.lib().bpf_program__attach(prog)
        err = ctypes.get_errno()
        return self._link(ptr, self.section, None if ptr else self._diagnose_section(err))

    def _diagnose_section(self, err: int) -> str | None:
        kind = sections.kind(self.section)
        rest = self.section.partition("/")[2]
        if kind in (
            "kprobe",
            "kretprobe",
            "ksyscall",
            "kretsyscall",
            "kprobe.multi",
            "kretprobe.multi",
        ):
            why = kprobes_unavailable()
            if why is None and err == E.ENOENT:
                # Seen on Debian's 6.12.117: __x64_sys_getpid is in kallsyms but not in
                # available_filter_functions, where libbpf >= 1.3 resolves kprobe.multi.
                why = (f"no traceable kernel function matches {rest!r} (a function must be "
                       "in available_filter_functions; syscall wrappers such as __x64_sys_* "
                       "are missing there on some kernels: ksyscall/NAME attaches those)")
            return why
        if kind in ("tracepoint", "tp"):
            category, _, name = rest.partition("/")
            return tracepoint_missing(category, name)
        if kind in sections.TRACING:
            from . import diagnose

            return diagnose.tracing(kind, rest, err)
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

    # -- networking: XDP, tc/tcx, cgroups, network namespaces, sockmaps --------------------

    def attach_xdp(self, interface: str | int, *, mode: str = "auto") -> Link:
        """Attach to ``interface`` (name or index) as a BPF link; ``mode``: ``"auto"`` (the
        driver's native XDP when it has one, else generic), ``"generic"`` (skb), ``"driver"``
        or ``"offload"`` (the NIC; the program must be loaded for offload)."""
        from . import netattach

        return self._track(netattach.xdp(self, interface, mode))

    def attach_tc(
        self,
        interface: str | int,
        direction: str = "ingress",
        *,
        priority: int | None = None,
        handle: int | None = None,
        via: str = "auto",
    ) -> Link:
        """Attach a tc program (SEC("tc")/"classifier") to ``interface``'s ``direction``.

        Through tcx on kernels >= 6.6 (a BPF link, ``link.via == "tcx"``), else through a
        direct-action filter on a clsact qdisc (``link.via == "clsact"``, ``link.note`` says
        why), created when missing and removed with the last filter placed here.
        ``priority``/``handle`` are clsact filter properties: giving one selects clsact.
        ``via="tcx"`` or ``"clsact"`` forces one.
        """
        from . import netattach

        return self._track(netattach.tc(self, interface, direction, priority, handle, via))

    def attach_cgroup(self, cgroup: str | os.PathLike[str] | int) -> Link:
        """Attach to a cgroup v2 directory (a path, or an open fd) at the hook the section
        names (cgroup_skb/egress, cgroup/connect4, sockops, cgroup/sysctl, ...)."""
        from . import netattach

        return self._track(netattach.cgroup(self, cgroup))

    def attach_netns(self, netns: str | os.PathLike[str] | int) -> Link:
        """Attach an sk_lookup or flow_dissector program to a network namespace: a path
        (``/proc/self/ns/net``, ``/run/netns/NAME``) or an open fd."""
        from . import netattach

        return self._track(netattach.netns(self, netns))

    def attach_sockmap(self, sockmap: object) -> Link:
        """Attach an sk_msg or sk_skb program to a sockmap/sockhash (the map handle or fd),
        at the attach type the section names (sk_msg, sk_skb/stream_verdict, ...)."""
        from . import netattach

        return self._track(netattach.sockmap(self, sockmap))

    # -- perf events, USDT, iterators, BPF trampolines -------------------------------------

    def attach_perf_event(
        self,
        event: str | tuple[int, int] = "cpu-clock",
        *,
        frequency: int | None = None,
        period: int | None = None,
        cpu: int | None = None,
        pid: int = -1,
    ) -> LinkGroup:
        """Run the program on samples of a perf event: by default the cpu-clock software
        event on every online CPU at ``perf.DEFAULT_FREQUENCY`` Hz. ``event`` is a name
        (``cpu-clock``, ``task-clock``, ``cpu-cycles``, ``instructions``, ...) or a
        ``(type, config)`` pair; ``frequency`` (Hz) or ``period`` (events per sample);
        ``cpu`` one CPU instead of all; ``pid`` one process (with every CPU)."""
        from . import perf

        group = perf.attach(self, event, frequency, period, cpu, pid)
        self._track(group)
        return group

    def attach_usdt(
        self,
        binary: str | os.PathLike[str],
        provider: str,
        name: str,
        *,
        pid: int | None = None,
        cookie: int = 0,
    ) -> Link:
        """Attach a SEC("usdt") program to the USDT probe ``provider:name`` in ``binary``
        (every process running it, or only ``pid``)."""
        path = os.fspath(binary)
        target = f"usdt {path}:{provider}:{name}"
        prog = self._prog(target)
        if not os.path.exists(path):
            raise AttachError(f"attaching program {self.name!r} to {target}: no such file {path}")
        opts = libbpf.BpfUsdtOpts(sz=ctypes.sizeof(libbpf.BpfUsdtOpts), usdt_cookie=cookie)
        with libbpf.capture_warnings() as warnings:
            ptr = libbpf.lib().bpf_program__attach_usdt(
                prog,
                -1 if pid is None else pid,
                path.encode(),
                provider.encode(),
                name.encode(),
                ctypes.byref(opts),
            )
            err = ctypes.get_errno()
        diagnose = None
        if not ptr:
            if err == E.ENOENT:
                diagnose = f"no USDT probe {provider}:{name} in {path} (see readelf -n {path})"
            elif warnings:
                diagnose = warnings[-1].removeprefix("libbpf: ")
        if not ptr:
            raise self._fail(target, err or E.EINVAL, diagnose)
        return self._track(Link(ptr, self, target))

    def attach_iter(self) -> Link:
        """Attach an iterator (SEC("iter/task"), ...); read it with ``iterate()``."""
        target = f"iterator {self.section}"
        ptr = libbpf.lib().bpf_program__attach_iter(self._prog(target), None)
        err = ctypes.get_errno()
        diagnose = None
        if not ptr:
            from . import diagnose as d

            diagnose = d.tracing("iter", self.section.partition("/")[2], err)
        return self._link(ptr, target, diagnose)

    def iterate(self, *, lines: bool = False, chunk: int = 1 << 16) -> Iterator[bytes]:
        """Run the iterator once and yield its output: chunks of bytes as the kernel hands
        them over, or (``lines=True``) one line at a time without the newline.

        Attaches for the duration of the run (an iterator link of the section's kind)."""
        with self.attach_iter() as link:
            fd = libbpf.lib().bpf_iter_create(link.fd)
            if fd < 0:
                raise libbpf.error(fd, f"{self.name}: bpf_iter_create")
            try:
                pending = b""
                while True:
                    data = os.read(fd, chunk)
                    if not data:
                        break
                    if not lines:
                        yield data
                        continue
                    pending += data
                    *done, pending = pending.split(b"\n")
                    yield from done
                if lines and pending:
                    yield pending
            finally:
                os.close(fd)

    def attach_trace(self) -> Link:
        """Attach fentry/fexit/fmod_ret/tp_btf at the target its section or
        ``set_attach_target()`` named."""
        target = f"trampoline {self.section}"
        ptr = libbpf.lib().bpf_program__attach_trace(self._prog(target))
        err = ctypes.get_errno()
        return self._link(ptr, target, None if ptr else self._diagnose_section(err))

    def attach_lsm(self) -> Link:
        """Attach a BPF LSM program at the hook its section names (lsm/file_open)."""
        target = f"LSM hook {self.section.partition('/')[2] or '?'}"
        prog = self._prog(target)
        from . import diagnose

        inactive = diagnose.bpf_lsm_inactive()
        if inactive:  # the kernel would attach it, and the hook would never call it
            raise AttachError(f"attaching program {self.name!r} to {target}: {inactive}")
        ptr = libbpf.lib().bpf_program__attach_lsm(prog)
        err = ctypes.get_errno()
        return self._link(ptr, target, None if ptr else self._diagnose_section(err))

    def attach_freplace(self, target_program: Program | int, function: str) -> Link:
        """Replace global function ``function`` of another loaded program (SEC("freplace"))."""
        fd = target_program.fd if isinstance(target_program, Program) else int(target_program)
        target = f"freplace {function} of program fd {fd}"
        ptr = libbpf.lib().bpf_program__attach_freplace(self._prog(target), fd, function.encode())
        err = ctypes.get_errno()
        from . import diagnose

        return self._link(ptr, target, None if ptr else diagnose.tracing("freplace", "", err))

    # -- BPF_PROG_TEST_RUN -----------------------------------------------------------------

    def test_run(
        self,
        data: bytes = b"",
        *,
        ctx: object = None,
        repeat: int = 1,
        data_size_out: int | None = None,
        flags: int = 0,
    ) -> TestRunResult:
        """Run the program once (or ``repeat`` times) on ``data`` in the kernel, without
        attaching (BPF_PROG_TEST_RUN): ``.retval``, ``.data`` (the packet as the program
        left it), ``.ctx`` (``SkBuff``/``XdpMd`` for skb and XDP programs, else bytes),
        ``.duration`` (seconds per run). ``ctx``: a ctypes struct or bytes passed in.
        ``flags``: ``testrun.BPF_F_TEST_XDP_LIVE_FRAMES`` sends XDP_TX/REDIRECT frames for
        real (``ctx=XdpMd(ingress_ifindex=...)``; no output then), ``BPF_F_TEST_RUN_ON_CPU``.
        """
        from . import testrun

        return testrun.run(self, data, ctx, repeat, data_size_out, flags)
