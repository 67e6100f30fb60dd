"""A twin of cilium/ebpf's examples/tcx: packets per IPv4 session, counted by two tc
programs on an interface's ingress and egress.

Run: sudo .venv/bin/python -m examples.tcx INTERFACE [--interval 1] [--duration S] [--json]
Shows: ``attach_tc(interface, "ingress"|"egress")`` (tcx on kernels >= 6.6, else a clsact
qdisc: the app says which), a hash map with struct keys and values.
"""

from __future__ import annotations

import argparse
import socket
import sys

from examples import _common, _rounds
from examples.xdp import address
from generated import tcx

PROG = "tcx"
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP"}


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count packets per IPv4 session.", count=False, attach=False)
    p.add_argument("interface", help="network interface (name or index) to attach to")
    _rounds.add_interval(p)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _count(args))


def _count(args: argparse.Namespace) -> int:
    _common.require_root()
    interface = int(args.interface) if args.interface.isdigit() else args.interface
    with tcx.load() as objs:
        progs = objs.programs
        with (
            progs.ingress_prog_func.attach_tc(interface, "ingress") as ingress,
            progs.egress_prog_func.attach_tc(interface, "egress"),
        ):
            if ingress.note:
                print(f"{PROG}: {ingress.note}", file=sys.stderr, flush=True)
            stats = objs.maps.stats_map

            def show() -> None:
                rows = sorted((_row(k, v) for k, v in stats.items()), key=str)
                text = "\n".join(
                    f"{r['proto']} {r['src']} -> {r['dst']}: in {r['in']} out {r['out']}"
                    for r in rows
                ) or "(no sessions yet)"
                _common.emit(args.json, {"via": ingress.via, "sessions": rows}, text)

            return _rounds.every(args.interval, args.duration, show)


def _row(key: tcx.SessionKey, value: tcx.SessionValue) -> dict[str, object]:
    sport, dport = socket.ntohs(key.sport), socket.ntohs(key.dport)
    return {
        "proto": PROTOCOLS.get(key.proto, str(key.proto)),
        "src": f"{address(key.saddr)}:{sport}",
        "dst": f"{address(key.daddr)}:{dport}",
        "in": value.in_count,
        "out": value.eg_count,
    }


if __name__ == "__main__":
    sys.exit(main())
