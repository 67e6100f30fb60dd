"""What a program's ELF section says about attaching it.

libbpf attaches a program from its section alone when the section names the target
(``tracepoint/syscalls/sys_enter_execve``, ``fentry/do_unlinkat``, ``iter/task``,
``cgroup_skb/egress`` names the hook but not the cgroup...). For the others a user must
call a method with an argument; ``needs()`` says which, so ``attach()`` can tell the user and
``attach_all()`` can list what it left.
"""

from __future__ import annotations

# Section kinds (the part before the first "/", without a ".s" sleepable suffix) that never
# name their target, with the method and argument the user must give instead.
_NEEDS: dict[str, str] = {
    "xdp": "attach_xdp(interface)",
    "xdp.frags": "attach_xdp(interface)",
    "tc": "attach_tc(interface, direction)",
    "tcx": "attach_tc(interface, direction)",
    "classifier": "attach_tc(interface, direction)",
    "action": "a tc action (attach it with the tc command)",
    "netkit": "a netkit device (not supported)",
    "cgroup_skb": "attach_cgroup(path_or_fd)",
    "cgroup": "attach_cgroup(path_or_fd)",
    "sockops": "attach_cgroup(path_or_fd)",
    "sk_lookup": "attach_netns(path_or_fd)",
    "flow_dissector": "attach_netns(path_or_fd)",
    "sk_msg": "attach_sockmap(map)",
    "sk_skb": "attach_sockmap(map)",
    "perf_event": "attach_perf_event() (cpu-clock on every CPU by default)",
    "socket": "attach_socket(sock) (SO_ATTACH_BPF)",
    "freplace": "attach_freplace(target_program, function)",
    "struct_ops": "a struct_ops map (not supported)",
    "struct_ops.s": "a struct_ops map (not supported)",
    "lwt_in": "a route (ip route ... encap bpf in obj)",
    "lwt_out": "a route (ip route ... encap bpf out obj)",
    "lwt_xmit": "a route (ip route ... encap bpf xmit obj)",
    "lwt_seg6local": "a route (ip route ... encap seg6local)",
    "lirc_mode2": "a lirc device (not supported)",
    "sk_reuseport": "a socket option (SO_ATTACH_REUSEPORT_EBPF)",
    "syscall": "test_run() (a syscall program only runs through BPF_PROG_TEST_RUN)",
    "netfilter": "a netfilter hook (not supported)",
}

# Kinds that name their target after a "/", and what to call when the section stops short.
_BARE: dict[str, str] = {
    "kprobe": "attach_kprobe(function)",
    "kretprobe": "attach_kprobe(function, retprobe=True)",
    "ksyscall": "attach_kprobe(function)",
    "kretsyscall": "attach_kprobe(function, retprobe=True)",
    "uprobe": "attach_uprobe(binary, symbol)",
    "uretprobe": "attach_uprobe(binary, symbol, retprobe=True)",
    "usdt": "attach_usdt(binary, provider, name)",
    "tracepoint": "attach_tracepoint(category, name)",
    "tp": "attach_tracepoint(category, name)",
    "raw_tracepoint": "attach_raw_tracepoint(name)",
    "raw_tp": "attach_raw_tracepoint(name)",
    "tp_btf": "set_attach_target(program, function) before load",
    "fentry": "set_attach_target(program, function) before load",
    "fexit": "set_attach_target(program, function) before load",
    "fmod_ret": "set_attach_target(program, function) before load",
    "lsm": "set_attach_target(program, hook) before load",
    "iter": "a section iter/<target> (e.g. iter/task)",
}

# Kinds whose target cgroup, interface or map is a run-time argument even though the section
# names the hook (cgroup_skb/egress): they are in _NEEDS; these are the tracing families.
TRACING = ("fentry", "fexit", "fmod_ret", "lsm", "tp_btf", "freplace", "iter")


def kind(section: str) -> str:
    """``cgroup_skb/egress`` -> ``cgroup_skb``; ``uprobe.s/...`` -> ``uprobe``."""
    head = section.partition("/")[0]
    if head.endswith(".s") and head not in _NEEDS:
        head = head[:-2]
    return head


def needs(section: str) -> str | None:
    """The method (and argument) a program of this section must be attached with, or None
    when the section itself names the target."""
    k = kind(section)
    if k in _NEEDS:
        return _NEEDS[k]
    rest = section.partition("/")[2]
    if k in _BARE and not rest:
        return _BARE[k]
    if k in ("tracepoint", "tp") and "/" not in rest:
        return _BARE[k]
    return None
