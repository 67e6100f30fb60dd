"""Networking programs on the real kernel: XDP and tc on a veth pair in namespaces of the
test's own, with its own UDP/ICMP traffic and exact counts; BPF_PROG_TEST_RUN on crafted
packets; attach() advice and attach_all()."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.runtime import AttachError, FdLink, TcFilterLink
from ebpf_gen.runtime.diagnose import kernel_version
from ebpf_gen.runtime.testrun import SkBuff, XdpMd

from tests.conftest import require_tool
from tests.netns import VethPair, in_ns, inside, receive_all, veth_pair
from tests.vm.kernel_features import lacks

pytestmark = pytest.mark.kernel

PORT = 47001  # UDP to PORT passes and is counted, PORT+1 is dropped, PORT+2 rewritten

NET = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

const volatile __u16 port = 0;
const volatile __u8 drop_icmp = 0;
__u64 xdp_udp = 0, xdp_dropped = 0, xdp_icmp = 0;
__u64 tc_udp = 0, tc_dropped = 0;

/* The UDP header of an IPv4 packet starting at eth, or NULL. */
static __always_inline struct udphdr *udp_of(void *eth_start, void *end, __u8 *proto)
{
    struct ethhdr *eth = eth_start;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5)
        return 0;
    *proto = ip->protocol;
    struct udphdr *udp = (void *)(ip + 1);
    if (ip->protocol != IPPROTO_UDP || (void *)(udp + 1) > end)
        return 0;
    return udp;
}

SEC("xdp")
int xdp_filter(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u8 proto = 0;
    struct udphdr *udp = udp_of(data, end, &proto);
    if (proto == IPPROTO_ICMP) {
        __sync_fetch_and_add(&xdp_icmp, 1);
        return drop_icmp ? XDP_DROP : XDP_PASS;
    }
    if (!udp)
        return XDP_PASS;
    if (udp->dest == bpf_htons(port)) {
        __sync_fetch_and_add(&xdp_udp, 1);
        return XDP_PASS;
    }
    if (udp->dest == bpf_htons(port + 1)) {
        __sync_fetch_and_add(&xdp_dropped, 1);
        return XDP_DROP;
    }
    if (udp->dest == bpf_htons(port + 2)) {
        /* bounce it: swap the MAC addresses and send it back out */
        struct ethhdr *eth = data;
        unsigned char tmp[ETH_ALEN];
        __builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
        __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
        __builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
        return XDP_TX;
    }
    return XDP_PASS;
}

SEC("tc")
int tc_filter(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    __u8 proto = 0;
    struct udphdr *udp = udp_of(data, end, &proto);
    if (!udp)
        return TC_ACT_OK;
    if (udp->dest == bpf_htons(port)) {
        __sync_fetch_and_add(&tc_udp, 1);
        skb->mark = 0x42;
        return TC_ACT_OK;
    }
    if (udp->dest == bpf_htons(port + 1)) {
        __sync_fetch_and_add(&tc_dropped, 1);
        return TC_ACT_SHOT;
    }
    if (udp->dest == bpf_htons(port + 2)) {
        /* rewrite the first payload byte */
        char x = 'X';
        bpf_skb_store_bytes(skb, sizeof(struct ethhdr) + sizeof(struct iphdr) +
                            sizeof(struct udphdr), &x, 1, 0);
        return TC_ACT_OK;
    }
    return TC_ACT_OK;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx) { return 0; }

SEC("perf_event")
int on_sample(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture
def net(skeleton: Callable[[str, str], ModuleType]) -> Iterator[Any]:
    mod = skeleton("rt_net", NET)
    with mod.load(constants={"port": PORT}) as o:
        yield o


@pytest.fixture
def pair() -> Iterator[VethPair]:
    require_tool("ip")
    with veth_pair("i10") as p:
        yield p


def send(pair: VethPair, src: str, counts: dict[int, int]) -> None:
    """From namespace ``src``, ``counts[port]`` datagrams to each port on the other side."""
    dst = pair.addr_a if src == "b" else pair.addr_b
    s = pair.udp_socket(src)
    with s:
        for port, n in counts.items():
            for i in range(n):
                s.sendto(f"datagram {i}".encode(), (dst, port))


# --- XDP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["generic", "driver", "auto"])
def test_xdp_counts_and_drops_on_veth(net: Any, pair: VethPair, mode: str) -> None:
    v = net.variables
    with inside(pair.ns_a):
        link = net.programs.xdp_filter.attach_xdp(pair.dev_a, mode=mode)
    assert isinstance(link, FdLink) and link in net.links and link.fd >= 0
    passed, dropped = pair.udp_socket("a", PORT), pair.udp_socket("a", PORT + 1)
    with passed, dropped, link:
        send(pair, "b", {PORT: 5, PORT + 1: 3})
        got, lost = receive_all(passed, 5), receive_all(dropped, 3, timeout=0.2)
    assert (len(got), len(lost)) == (5, 0)
    assert (v.xdp_udp, v.xdp_dropped) == (5, 3)
    # Detached: the same traffic is neither counted nor dropped.
    passed, dropped = pair.udp_socket("a", PORT), pair.udp_socket("a", PORT + 1)
    with passed, dropped:
        send(pair, "b", {PORT: 2, PORT + 1: 2})
        assert len(receive_all(passed, 2)) == 2 and len(receive_all(dropped, 2)) == 2
    assert (v.xdp_udp, v.xdp_dropped) == (5, 3)


def icmp_echo(pair: VethPair, n: int) -> int:
    """Send ``n`` ICMP echo requests from b to a; the number of replies."""
    with inside(pair.ns_b):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    replies = 0
    with s:
        s.settimeout(0.3)
        for seq in range(n):
            header = struct.pack("!BBHHH", 8, 0, 0, 0x1234, seq)
            csum = _checksum(header)
            s.sendto(struct.pack("!BBHHH", 8, 0, csum, 0x1234, seq), (pair.addr_a, 0))
            for _ in range(5):  # bounded: skip our own request echoed back
                try:
                    packet = s.recv(1024)
                except TimeoutError:
                    break
                if packet[20] == 0 and struct.unpack("!H", packet[26:28])[0] == seq:
                    replies += 1
                    break
    return replies


def _checksum(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def test_xdp_drops_icmp(skeleton: Callable[[str, str], ModuleType], pair: VethPair) -> None:
    mod = skeleton("rt_net", NET)
    assert icmp_echo(pair, 2) == 2  # the path works without the program
    with mod.load(constants={"port": PORT, "drop_icmp": 1}) as o:
        with inside(pair.ns_a):
            o.programs.xdp_filter.attach_xdp(pair.dev_a)
        assert icmp_echo(pair, 3) == 0
        assert o.variables.xdp_icmp == 3


def test_xdp_errors(net: Any, pair: VethPair) -> None:
    with pytest.raises(AttachError, match="no network interface 'nosuchdev0'"):
        net.programs.xdp_filter.attach_xdp("nosuchdev0")
    with pytest.raises(ValueError, match="XDP mode must be one of"):
        net.programs.xdp_filter.attach_xdp("lo", mode="fast")
    with (
        inside(pair.ns_a),
        net.programs.xdp_filter.attach_xdp(pair.dev_a, mode="generic"),
        pytest.raises(AttachError, match="already has an XDP program"),
    ):
        net.programs.xdp_filter.attach_xdp(pair.dev_a, mode="generic")
    with inside(pair.ns_a), pytest.raises(AttachError, match="cannot offload XDP"):
        net.programs.xdp_filter.attach_xdp(pair.dev_a, mode="offload")


# --- tc ----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["auto", "clsact"])
@pytest.mark.parametrize("direction", ["ingress", "egress"])
def test_tc_counts_and_drops(net: Any, pair: VethPair, direction: str, via: str) -> None:
    v = net.variables
    with inside(pair.ns_a):
        link = net.programs.tc_filter.attach_tc(pair.dev_a, direction, via=via)
    if via == "clsact":
        assert isinstance(link, TcFilterLink) and link.via == "clsact"
        assert link.handle > 0 and link.priority > 0
    elif not lacks("tcx"):  # the host (6.18) and the 6.12 guest
        assert kernel_version() >= (6, 6)
        assert link.via == "tcx" and link.note == ""
    else:  # the visible fallback
        assert link.via == "clsact" and "tcx needs kernel >= 6.6" in link.note
    # ingress on a: traffic from b to a; egress on a: from a to b.
    receiver, sender = ("a", "b") if direction == "ingress" else ("b", "a")
    passed, dropped = pair.udp_socket(receiver, PORT), pair.udp_socket(receiver, PORT + 1)
    with passed, dropped, link:
        send(pair, sender, {PORT: 4, PORT + 1: 6})
        got, lost = receive_all(passed, 4), receive_all(dropped, 6, timeout=0.2)
    assert (len(got), len(lost)) == (4, 0)
    assert (v.tc_udp, v.tc_dropped) == (4, 6)
    passed = pair.udp_socket(receiver, PORT)
    with passed:
        send(pair, sender, {PORT: 1})
        assert len(receive_all(passed, 1)) == 1
    assert v.tc_udp == 4
    out = subprocess_out(*in_ns(pair.ns_a), "tc", "qdisc", "show", "dev", pair.dev_a)
    assert "clsact" not in out  # the qdisc made for the filter went with it


def test_tc_priority_handle_select_clsact(net: Any, pair: VethPair) -> None:
    with inside(pair.ns_a):
        link = net.programs.tc_filter.attach_tc(pair.dev_a, priority=7, handle=3)
    with link:
        assert isinstance(link, TcFilterLink) and (link.priority, link.handle) == (7, 3)
        assert "priority/handle given" in link.note
        out = subprocess_out(*in_ns(pair.ns_a), "tc", "filter", "show", "dev",
                             pair.dev_a, "ingress")
        assert "pref 7" in out and "handle 0x3" in out and "direct-action" in out
    with pytest.raises(ValueError, match="tc direction must be"):
        net.programs.tc_filter.attach_tc("lo", "sideways")


def subprocess_out(*cmd: str) -> str:
    import subprocess

    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


# --- test_run ----------------------------------------------------------------------------

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def udp_packet(dport: int, payload: bytes = b"hello") -> bytes:
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2"))
    return MAC_B + MAC_A + b"\x08\x00" + ip + udp


def test_test_run_xdp_verdicts_and_rewrite(net: Any) -> None:
    prog = net.programs.xdp_filter
    XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
    r = prog.test_run(udp_packet(PORT))
    assert r.retval == XDP_PASS and r.data == udp_packet(PORT)
    if kernel_version() >= (5, 13):
        assert isinstance(r.ctx, XdpMd) and r.ctx.data_end - r.ctx.data == len(r.data)
    else:  # XDP test runs take and give no context before 5.13
        assert r.ctx is None
    assert r.duration_ns >= 0 and r.duration == r.duration_ns / 1e9
    assert prog.test_run(udp_packet(PORT + 1)).retval == XDP_DROP
    bounced = prog.test_run(udp_packet(PORT + 2))
    assert bounced.retval == XDP_TX
    assert bounced.data[:12] == MAC_A + MAC_B  # the addresses were swapped
    assert bounced.data[12:] == udp_packet(PORT + 2)[12:]
    r = prog.test_run(udp_packet(PORT), repeat=100)
    assert r.retval == XDP_PASS and r.repeat == 100
    assert (net.variables.xdp_udp, net.variables.xdp_dropped) == (101, 1)
    assert prog.test_run(b"\x00" * 14).retval == XDP_PASS  # not IP: passed, not counted


def test_test_run_tc_context_and_rewrite(net: Any) -> None:
    prog = net.programs.tc_filter
    TC_ACT_OK, TC_ACT_SHOT = 0, 2
    r = prog.test_run(udp_packet(PORT))
    assert r.retval == TC_ACT_OK and isinstance(r.ctx, SkBuff)
    assert r.ctx.mark == 0x42  # the program's write to skb->mark comes back
    assert prog.test_run(udp_packet(PORT + 1)).retval == TC_ACT_SHOT
    r = prog.test_run(udp_packet(PORT + 2, b"hello"))
    assert r.retval == TC_ACT_OK and r.data == udp_packet(PORT + 2, b"Xello")
    ctx = SkBuff(mark=7, priority=3)
    r = prog.test_run(udp_packet(PORT + 3), ctx=ctx)
    assert isinstance(r.ctx, SkBuff) and (r.ctx.mark, r.ctx.priority) == (7, 3)
    assert (net.variables.tc_udp, net.variables.tc_dropped) == (1, 1)


def test_test_run_errors(net: Any) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        net.programs.xdp_filter.test_run("packet")
    with pytest.raises(ValueError, match="repeat"):
        net.programs.xdp_filter.test_run(udp_packet(PORT), repeat=0)
    with pytest.raises(Exception, match="only some fields may be set"):
        net.programs.tc_filter.test_run(udp_packet(PORT), ctx=SkBuff(len=5, protocol=9))
    with pytest.raises(Exception, match="cannot test-run this program type"):
        net.programs.on_sample.test_run(b"")


# --- attach() advice, attach_all(), Programs ---------------------------------------------


@pytest.mark.parametrize(
    ("program", "advice"),
    [
        ("xdp_filter", r"section 'xdp' names no target: use attach_xdp\(interface\)"),
        ("tc_filter", r"section 'tc' names no target: use attach_tc\(interface, direction\)"),
        ("on_sample", r"section 'perf_event' names no target: use attach_perf_event\(\)"),
    ],
)
def test_attach_by_section_says_what_is_needed(net: Any, program: str, advice: str) -> None:
    with pytest.raises(AttachError, match=advice):
        getattr(net.programs, program).attach()


def test_programs_iterable_and_attach_all(net: Any) -> None:
    names = [p.name for p in net.programs]
    assert names == ["xdp_filter", "tc_filter", "on_getppid", "on_sample"]
    assert len(net.programs) == 4 and net.programs["tc_filter"] is net.programs.tc_filter
    with pytest.raises(KeyError, match="no program 'nope'; known: xdp_filter"):
        net.programs["nope"]
    result = net.attach_all()
    assert [link.program.name for link in result.links] == ["on_getppid"]
    assert set(result.skipped) == {"xdp_filter", "tc_filter", "on_sample"}
    assert "attach_xdp(interface)" in result.skipped["xdp_filter"]
    assert all(link in net.links for link in result.links)
    for link in result.links:
        link.close()
    with pytest.raises(AttachError, match="attach_all left programs unattached: xdp_filter"):
        net.attach_all(strict=True)
    assert net.links == ()  # strict failure detached what it attached


def test_clsact_qdisc_stays_while_a_filter_of_ours_holds_it(net: Any, pair: VethPair) -> None:
    prog = net.programs.tc_filter
    with inside(pair.ns_a):
        ingress = prog.attach_tc(pair.dev_a, "ingress", via="clsact")
        egress = prog.attach_tc(pair.dev_a, "egress", via="clsact")

    def qdisc() -> str:
        return subprocess_out(*in_ns(pair.ns_a), "tc", "qdisc", "show", "dev",
                              pair.dev_a)

    ingress.close()
    assert "clsact" in qdisc()
    passed = pair.udp_socket("b", PORT)
    with passed:
        send(pair, "a", {PORT: 2})  # the egress filter still counts
        assert len(receive_all(passed, 2)) == 2
    assert net.variables.tc_udp == 2
    egress.close()
    assert "clsact" not in qdisc()
