"""A twin of cilium/ebpf's examples/xdp_live_frame: UDP packets generated in the kernel by
BPF_PROG_TEST_RUN in live-frame mode, ``--count`` copies out of INTERFACE.

Run: sudo .venv/bin/python -m examples.xdp_live_frame INTERFACE DST_MAC SRC_IP DST_IP
     [--port 9] [--count 10] [--json]
Shows: ``test_run(packet, ctx=XdpMd(ingress_ifindex=...), repeat=N,
flags=BPF_F_TEST_XDP_LIVE_FRAMES)`` (kernel 5.18+), ``attach_xdp`` to enable XDP on the
interface.
"""

from __future__ import annotations

import argparse
import fcntl
import socket
import struct
import sys

from ebpf_gen.runtime.netattach import ifindex
from ebpf_gen.runtime.testrun import BPF_F_TEST_XDP_LIVE_FRAMES, XdpMd

from examples import _common
from generated import xdp_live_frame

PROG = "xdp_live_frame"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Send UDP packets from the kernel.", count=False, attach=False)
    p.add_argument("interface")
    p.add_argument("dst_mac", help="destination MAC, aa:bb:cc:dd:ee:ff")
    p.add_argument("src_ip")
    p.add_argument("dst_ip")
    p.add_argument("--port", type=int, default=9, help="UDP destination port (default 9)")
    p.add_argument("--count", type=int, default=10, help="packets to send (default 10)")
    args = p.parse_args(argv)
    if not 0 < args.port < 65536 or args.count <= 0:
        p.error("--port must be 1..65535 and --count > 0")
    return _common.run(PROG, lambda: _send(args))


def udp_packet(src_mac: bytes, dst_mac: bytes, src: str, dst: str, port: int) -> bytes:
    payload = b"ebpf-gen live frame"
    udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload  # no UDP checksum
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    csum = sum(struct.unpack("!10H", ip))
    csum = (csum >> 16) + (csum & 0xFFFF)
    ip = ip[:10] + struct.pack("!H", ~(csum + (csum >> 16)) & 0xFFFF) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def hw_address(name: str) -> bytes:
    """The interface's MAC, asked of the kernel in this process's network namespace.

    (/sys/class/net shows the namespace /sys was mounted in, not necessarily ours.)
    """
    siocgifhwaddr = 0x8927
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16s16x", name.encode())
        reply = fcntl.ioctl(s.fileno(), siocgifhwaddr, req)
    return reply[18:24]  # struct ifreq: name[16], then sockaddr: family (2), data[6]


def _send(args: argparse.Namespace) -> int:
    _common.require_root()
    index, name = ifindex(args.interface)
    src_mac = hw_address(name)
    packet = udp_packet(src_mac, bytes.fromhex(args.dst_mac.replace(":", "")), args.src_ip,
                        args.dst_ip, args.port)
    with xdp_live_frame.load() as objs, objs.programs.xdp_prog_pass.attach_xdp(index):
        # Live frames report no verdict (retval stays 0): the frames themselves are the result.
        objs.programs.xdp_prog_tx.test_run(
            packet, ctx=XdpMd(ingress_ifindex=index), repeat=args.count,
            flags=BPF_F_TEST_XDP_LIVE_FRAMES,
        )
    record = {"interface": name, "sent": args.count}
    _common.emit(args.json, record, f"sent {args.count} packets out of {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
