"""A twin of cilium/ebpf's examples/xdp: IPv4 packets counted per source address by XDP.

Run: sudo .venv/bin/python -m examples.xdp INTERFACE [--mode auto] [--interval 1]
     [--duration S] [--json]
Shows: ``attach_xdp(interface, mode=...)``, an LRU hash map keyed by the IPv4 address in
network byte order.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

from examples import _common, _rounds
from generated import xdp

PROG = "xdp"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count IPv4 packets per source address.", count=False, attach=False)
    p.add_argument("interface", help="network interface (name or index) to attach to")
    p.add_argument("--mode", choices=["auto", "generic", "driver", "offload"], default="auto")
    _rounds.add_interval(p)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _count(args))


def _count(args: argparse.Namespace) -> int:
    _common.require_root()
    interface = int(args.interface) if args.interface.isdigit() else args.interface
    with xdp.load() as objs, objs.programs.xdp_prog_func.attach_xdp(interface, mode=args.mode):
        stats = objs.maps.xdp_stats_map

        def show() -> None:
            counts = sorted((address(k), v) for k, v in stats.items())
            text = ", ".join(f"{ip} => {n}" for ip, n in counts) or "(no packets yet)"
            _common.emit(args.json, {"packets": dict(counts)}, text)

        return _rounds.every(args.interval, args.duration, show)


def address(key: int) -> str:
    """An IPv4 address held as the packet's 4 bytes read as a host integer."""
    return socket.inet_ntoa(struct.pack("=I", key))


if __name__ == "__main__":
    sys.exit(main())
