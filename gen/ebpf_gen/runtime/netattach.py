"""Networking attach: XDP, tc (tcx or clsact), cgroups, network namespaces, sockmaps.

Called by Program's attach_* methods; each returns an untracked link (the Program tracks it).
"""

from __future__ import annotations

import ctypes
import errno as E
import os

from . import diagnose, libbpf
from .errors import AttachError
from .links import FdLink, Link, ProgAttachLink, TcFilterLink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .programs import Program

# enum bpf_attach_type values (uapi linux/bpf.h): stable ABI numbers, spelled here because
# older headers (and libbpf 1.1) do not know the newer ones.
BPF_XDP = 37
BPF_TCX_INGRESS, BPF_TCX_EGRESS = 46, 47
BPF_PROG_TYPE_FLOW_DISSECTOR = 22
XDP_MODES = {"auto": 0, "generic": 1 << 1, "driver": 1 << 2, "offload": 1 << 3}
BPF_TC_INGRESS, BPF_TC_EGRESS = 1, 2
TC_DIRECTIONS = {"ingress": BPF_TC_INGRESS, "egress": BPF_TC_EGRESS}
_logged_fallback: list[str] = []


def ifindex(interface: str | int) -> tuple[int, str]:
    """(index, display name) of an interface given by name or index, in this netns."""
    import socket

    if isinstance(interface, int):
        if interface <= 0:
            raise ValueError(f"interface index must be positive, not {interface}")
        try:
            return interface, socket.if_indextoname(interface)
        except OSError:
            raise AttachError(f"no network interface with index {interface}") from None
    try:
        return socket.if_nametoindex(interface), interface
    except OSError:
        raise AttachError(
            f"no network interface {interface!r} in this network namespace"
        ) from None


def _errno_of(ret: int) -> int:
    return -ret if ret < 0 else (ctypes.get_errno() or E.EINVAL)


def xdp(program: Program, interface: str | int, mode: str) -> Link:
    if mode not in XDP_MODES:
        raise ValueError(f"XDP mode must be one of {', '.join(XDP_MODES)}, not {mode!r}")
    index, name = ifindex(interface)
    target = f"XDP {name} ({mode})"
    program._prog(target)  # raises when not loaded
    opts = libbpf.BpfLinkCreateOpts(
        sz=ctypes.sizeof(libbpf.BpfLinkCreateOpts), flags=XDP_MODES[mode]
    )
    ret = libbpf.lib().bpf_link_create(program.fd, index, BPF_XDP, ctypes.byref(opts))
    if ret < 0:
        err = _errno_of(ret)
        why = None
        if err == E.EBUSY:
            why = f"{name} already has an XDP program in this or another mode (bpftool net)"
        elif err in (E.EOPNOTSUPP, E.ENOTSUP, diagnose.ENOTSUPP) and mode == "driver":
            why = f"the driver of {name} has no native XDP: use mode='generic'"
        elif mode == "offload" and err in (E.EINVAL, E.EOPNOTSUPP, diagnose.ENOTSUPP):
            why = (
                f"{name} cannot offload XDP (only NICs such as Netronome's do, with the "
                "program loaded for that device)"
            )
        elif err == E.EINVAL and program.type != 6:
            why = f"program type {program.type} is not XDP (section {program.section!r})"
        raise program._fail(target, err, why)
    return FdLink(ret, program, target, via="xdp")


def tc(
    program: Program,
    interface: str | int,
    direction: str,
    priority: int | None,
    handle: int | None,
    via: str,
) -> Link:
    if direction not in TC_DIRECTIONS:
        raise ValueError(f"tc direction must be 'ingress' or 'egress', not {direction!r}")
    if via not in ("auto", "tcx", "clsact"):
        raise ValueError(f"via must be 'auto', 'tcx' or 'clsact', not {via!r}")
    for what, value in (("priority", priority), ("handle", handle)):
        if value is not None and not (0 < value <= (0xFFFF if what == "priority" else 0xFFFFFFFF)):
            raise ValueError(f"tc filter {what} out of range: {value}")
    index, name = ifindex(interface)
    program._prog(f"tc {name} {direction}")
    note = ""
    if via == "tcx" or (via == "auto" and priority is None and handle is None):
        missing = diagnose.tcx_missing()
        if missing is None:
            kind = BPF_TCX_INGRESS if direction == "ingress" else BPF_TCX_EGRESS
            ret = libbpf.lib().bpf_link_create(program.fd, index, kind, None)
            if ret >= 0:
                return FdLink(ret, program, f"tcx {name} {direction}", via="tcx")
            err = _errno_of(ret)
            if via == "tcx" or err not in (E.EINVAL, E.EOPNOTSUPP, diagnose.ENOTSUPP):
                raise program._fail(f"tcx {name} {direction}", err, None)
            missing = f"this kernel refused a tcx link ({E.errorcode.get(err, err)})"
        elif via == "tcx":
            raise AttachError(
                f"attaching program {program.name!r} to tcx {name} {direction} failed: {missing}"
            )
        note = f"{missing}: attached through a clsact qdisc instead"
        if not _logged_fallback:
            _logged_fallback.append(note)
            libbpf._logger().info("%s", note)
    elif via == "auto":
        note = "priority/handle given: attached through a clsact qdisc"
    link = _clsact(program, index, name, direction, priority, handle)
    link.note = note
    return link


def _clsact(
    program: Program,
    index: int,
    name: str,
    direction: str,
    priority: int | None,
    handle: int | None,
) -> Link:
    lib = libbpf.lib()
    target = f"tc {name} {direction} (clsact)"
    hook = libbpf.BpfTcHook(
        sz=ctypes.sizeof(libbpf.BpfTcHook), ifindex=index, attach_point=TC_DIRECTIONS[direction]
    )
    ret = lib.bpf_tc_hook_create(ctypes.byref(hook))
    created = ret == 0
    if ret < 0 and ret != -E.EEXIST:
        raise program._fail(target, -ret, f"cannot create a clsact qdisc on {name}")
    opts = libbpf.BpfTcOpts(
        sz=ctypes.sizeof(libbpf.BpfTcOpts),
        prog_fd=program.fd,
        handle=handle or 0,
        priority=priority or 0,
    )
    ret = lib.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
    if ret < 0:
        if created:
            whole = libbpf.BpfTcHook(
                sz=ctypes.sizeof(libbpf.BpfTcHook), ifindex=index, attach_point=3
            )
            lib.bpf_tc_hook_destroy(ctypes.byref(whole))
        why = None
        if ret == -E.EEXIST:
            why = f"a filter with handle {handle} and priority {priority} is already there"
        elif ret == -E.EINVAL and program.type not in (3, 4):
            why = f"program type {program.type} is not tc (section {program.section!r})"
        raise program._fail(target, -ret, why)
    # The filter holds the program, not the fd: keep the ids to detach the right filter.
    opts.prog_fd, opts.prog_id, opts.flags = 0, 0, 0
    return TcFilterLink(program, target, hook, opts, created_qdisc=created)


def _open_dir(where: str | os.PathLike[str] | int, what: str) -> tuple[int, str, bool]:
    """(fd, display, we opened it) for a path or an fd."""
    if isinstance(where, int):
        return where, f"{what} fd {where}", False
    path = os.fspath(where)
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), path, True
    except OSError as e:
        raise AttachError(f"cannot open {what} {path}: {e.strerror}") from None


def cgroup(program: Program, where: str | os.PathLike[str] | int) -> Link:
    fd, display, opened = _open_dir(where, "cgroup")
    target = f"cgroup {display}"
    try:
        ptr = libbpf.lib().bpf_program__attach_cgroup(program._prog(target), fd)
        err = ctypes.get_errno()
        if not ptr:
            why = None
            if not isinstance(where, int):
                why = diagnose.cgroup2_problem(os.fspath(where))
            if why is None and err in (E.EINVAL, E.EOPNOTSUPP):
                why = (
                    f"section {program.section!r} does not name a cgroup hook "
                    "(cgroup_skb/ingress|egress, cgroup/sock_create, cgroup/connect4, "
                    "sockops, cgroup/sysctl, cgroup/dev, cgroup/getsockopt, ...)"
                )
            raise program._fail(target, err or E.EINVAL, why)
        return Link(ptr, program, target)
    finally:
        if opened:
            os.close(fd)


def netns(program: Program, where: str | os.PathLike[str] | int) -> Link:
    fd, display, opened = _open_dir(where, "network namespace")
    target = f"netns {display}"
    try:
        ptr = libbpf.lib().bpf_program__attach_netns(program._prog(target), fd)
        err = ctypes.get_errno()
        if not ptr:
            why = None
            if err == E.EINVAL:
                why = (
                    f"not a network namespace, or section {program.section!r} is not "
                    "sk_lookup or flow_dissector"
                )
            elif err == E.E2BIG and program.type == BPF_PROG_TYPE_FLOW_DISSECTOR:
                why = f"{display} already has a flow dissector (one per network namespace)"
            elif err == E.E2BIG:
                why = f"{display} already has the most sk_lookup programs the kernel allows (64)"
            elif err == E.EEXIST:  # one attached with bpf_prog_attach (no link) is in the way
                why = f"{display} has a {program.section} program attached without a link"
            raise program._fail(target, err or E.EINVAL, why)
        return Link(ptr, program, target)
    finally:
        if opened:
            os.close(fd)


def sockmap(program: Program, where: object) -> Link:
    fd = getattr(where, "fd", where)
    if not isinstance(fd, int):
        raise TypeError(f"attach_sockmap needs a sockmap handle or fd, not {type(where).__name__}")
    name = getattr(where, "name", f"fd {fd}")
    target = f"sockmap {name}"
    program._prog(target)
    attach_type = program.expected_attach_type
    ret = libbpf.lib().bpf_prog_attach(program.fd, fd, attach_type, 0)
    if ret < 0:
        why = None
        if -ret == E.EINVAL:
            why = (
                f"map {name} is not a sockmap/sockhash, or section {program.section!r} is not "
                "sk_msg / sk_skb/stream_parser / sk_skb/stream_verdict / sk_skb/verdict"
            )
        raise program._fail(target, -ret, why)
    return ProgAttachLink(program, target, fd, attach_type)
