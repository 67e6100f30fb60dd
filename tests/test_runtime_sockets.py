"""flow_dissector (test_run and attach_netns) and sk_skb (a sockmap's stream verdict) on the
real kernel: crafted packets for the dissector, real TCP connections over loopback for the
verdicts, counts and bytes exact."""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.runtime import AttachError

from tests.conftest import require_tool
from tests.netns import in_ns

pytestmark = pytest.mark.kernel

SRC = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

__u64 dissected = 0, passed = 0, dropped = 0, redirected = 0;

/* IPv4 only, ports of UDP/TCP; UDP to port 9 (discard) is refused with BPF_DROP. Headers
 * at skb->data + keys->nhoff, as the kernel selftests' bpf_flow.c reads them. */
SEC("flow_dissector")
int dissect(struct __sk_buff *skb)
{
    struct bpf_flow_keys *keys = skb->flow_keys;
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;

    __sync_fetch_and_add(&dissected, 1);
    /* Direct packet access: bpf_skb_load_bytes fails in a test run (there is no skb). */
    __u16 nhoff = keys->nhoff;
    if (keys->n_proto != bpf_htons(ETH_P_IP) || nhoff > 256)
        return BPF_DROP;
    struct iphdr *iph = data + nhoff;
    if ((void *)(iph + 1) > end || iph->ihl < 5)
        return BPF_DROP;
    keys->addr_proto = ETH_P_IP;
    keys->ipv4_src = iph->saddr;
    keys->ipv4_dst = iph->daddr;
    keys->ip_proto = iph->protocol;
    __u16 thoff = nhoff + iph->ihl * 4;
    keys->thoff = thoff;
    if (iph->protocol == IPPROTO_UDP || iph->protocol == IPPROTO_TCP) {
        __be16 *ports = data + thoff;
        if ((void *)(ports + 2) > end)
            return BPF_DROP;
        keys->sport = ports[0];
        keys->dport = ports[1];
        if (iph->protocol == IPPROTO_UDP && ports[1] == bpf_htons(9))
            return BPF_DROP;
    }
    return BPF_OK;
}

struct {
    __uint(type, BPF_MAP_TYPE_SOCKMAP);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
} socks SEC(".maps");

/* Data arriving on a socket in the map: 'D...' dropped, 'R...' sent out of the socket at
 * key 1 instead (to its peer), anything else delivered as usual. */
SEC("sk_skb/stream_verdict")
int verdict(struct __sk_buff *skb)
{
    __u8 first = 0;
    if (bpf_skb_load_bytes(skb, 0, &first, 1))
        return SK_PASS;
    if (first == 'D') {
        __sync_fetch_and_add(&dropped, 1);
        return SK_DROP;
    }
    if (first == 'R') {
        __sync_fetch_and_add(&redirected, 1);
        return bpf_sk_redirect_map(skb, &socks, 1, 0);
    }
    __sync_fetch_and_add(&passed, 1);
    return SK_PASS;
}
"""


@pytest.fixture
def objs(skeleton: Callable[[str, str], ModuleType]) -> Iterator[Any]:
    with skeleton("rt_sockets", SRC).load() as o:
        yield o


BPF_OK, BPF_DROP = 0, 2
KEYS = struct.Struct("<HHHBBBB2s2s2s4s4s")  # struct bpf_flow_keys up to ipv4_dst


def _udp_frame(src: str, dst: str, sport: int, dport: int) -> bytes:
    payload = b"dissect me"
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp


def test_flow_dissector_keys_and_verdict_by_test_run(objs: Any) -> None:
    prog = objs.programs.dissect
    res = prog.test_run(_udp_frame("10.1.2.3", "10.4.5.6", 4321, 53))
    assert res.retval == BPF_OK
    # For a flow dissector the kernel returns the struct bpf_flow_keys as the output data.
    (nhoff, thoff, addr_proto, is_frag, _first, _encap, ip_proto, n_proto, sport, dport,
     src, dst) = KEYS.unpack_from(bytes(res.data))
    assert (nhoff, thoff, addr_proto, is_frag, ip_proto) == (14, 34, 0x0800, 0, 17)
    assert n_proto == b"\x08\x00" and (sport, dport) == (struct.pack("!H", 4321),
                                                         struct.pack("!H", 53))
    assert (socket.inet_ntoa(src), socket.inet_ntoa(dst)) == ("10.1.2.3", "10.4.5.6")
    assert prog.test_run(_udp_frame("10.1.2.3", "10.4.5.6", 4321, 9)).retval == BPF_DROP
    arp = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28)
    assert prog.test_run(arp).retval == BPF_DROP
    assert objs.variables.dissected == 3


def test_flow_dissector_attached_to_a_netns(objs: Any) -> None:
    require_tool("ip")
    require_tool("bpftool")
    ns = f"ebpfgen-i10-fd-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        prog = objs.programs.dissect
        with prog.attach_netns(f"/run/netns/{ns}"):
            shown = subprocess.run([*in_ns(ns), "bpftool", "net", "show"], check=True,
                                   capture_output=True, text=True).stdout
            assert "flow_dissector" in shown, shown
            ids = _ids(shown)
            assert ids, shown
            # One dissector per namespace: a second link is refused, and said why.
            with pytest.raises(AttachError, match=r"already has a flow dissector \(one per"):
                prog.attach_netns(f"/run/netns/{ns}")
        shown = subprocess.run([*in_ns(ns), "bpftool", "net", "show"], check=True,
                               capture_output=True, text=True).stdout
        assert not _ids(shown), shown  # detached with the link
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _ids(bpftool_net: str) -> list[str]:
    """Program ids in `bpftool net show`'s flow_dissector section."""
    section = bpftool_net.partition("flow_dissector:")[2].split(":\n", 1)[0]
    return re.findall(r"\bid (\d+)", section)


def _connection() -> tuple[socket.socket, socket.socket]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    with srv:
        cli = socket.create_connection(srv.getsockname())
        peer, _ = srv.accept()
    for s in (cli, peer):
        s.settimeout(2.0)
    return cli, peer


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _nothing_more(s: socket.socket) -> bool:
    s.settimeout(0.3)
    try:
        return not s.recv(100)
    except TimeoutError:
        return True


def test_sk_skb_verdict_passes_drops_and_redirects(objs: Any) -> None:
    a_cli, a_peer = _connection()  # a_peer receives through the verdict program
    b_cli, b_peer = _connection()  # b_peer: where 'R' data is sent, to b_cli
    with a_cli, a_peer, b_cli, b_peer, objs.programs.verdict.attach_sockmap(objs.maps.socks):
        objs.maps.socks[0] = a_peer.fileno()
        objs.maps.socks[1] = b_peer.fileno()
        v = objs.variables
        a_cli.sendall(b"Pass one")
        assert _recv_exactly(a_peer, 8) == b"Pass one"
        a_cli.sendall(b"Redirect me")
        assert _recv_exactly(b_cli, 11) == b"Redirect me"  # out of b_peer, to its peer
        a_cli.sendall(b"Drop this")
        assert _nothing_more(a_peer) and _nothing_more(b_cli)
        a_cli.sendall(b"Pass two")
        assert _recv_exactly(a_peer, 8) == b"Pass two"
        assert (v.passed, v.redirected, v.dropped) == (2, 1, 1)
