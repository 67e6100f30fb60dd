"""A twin of cilium/ebpf's examples/fentry: every IPv4 TCP connect() on the machine, with
the command that made it, from an fentry program on tcp_connect().

Run: sudo .venv/bin/python -m examples.fentry [--count N] [--duration S] [--json]
Shows: an fentry program attached by its section (a BPF trampoline, no kprobe), kernel
structs read through CO-RE, a ``RingBuf[Event]``. Needs a kernel that runs BPF trampolines
(x86-64/arm64 from 5.5): where it refuses them the app stops with the runtime's diagnosis.
"""

from __future__ import annotations

import argparse
import socket
import sys

from examples import _common
from examples.xdp import address
from generated import fentry

PROG = "fentry"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Print every IPv4 TCP connect().", attach=False)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _trace(args))


def _trace(args: argparse.Namespace) -> int:
    _common.require_root()
    budget = _common.Budget(args.duration, args.count)
    with fentry.load() as objs, objs.programs.tcp_connect.attach() as link:
        print(f"{PROG}: attached {link.target}", file=sys.stderr, flush=True)
        if not args.json:
            print(f"{'Comm':16} {'Src addr':>15} {'Port':>6} -> {'Dest addr':>15} {'Port':>6}")
        events = objs.maps.events
        while not budget.exhausted:
            for ev in events.poll(budget.remaining(0.5)):
                row = {
                    "comm": bytes(ev.comm).split(b"\0", 1)[0].decode(errors="replace"),
                    "src": address(ev.saddr),
                    "sport": socket.ntohs(ev.sport),
                    "dst": address(ev.daddr),
                    "dport": socket.ntohs(ev.dport),
                }
                text = (f"{row['comm']:16} {row['src']:>15} {row['sport']:>6} -> "
                        f"{row['dst']:>15} {row['dport']:>6}")
                _common.emit(args.json, row, text)
                budget.spend()
                if budget.exhausted:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
