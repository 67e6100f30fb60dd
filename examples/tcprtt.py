"""A twin of cilium/ebpf's examples/tcprtt: the smoothed round-trip time of every IPv4 TCP
connection on the machine, printed as it closes (fentry on tcp_close()).

Run: sudo .venv/bin/python -m examples.tcprtt [--count N] [--duration S] [--json]
Shows: an fentry program casting its ``struct sock *`` with ``bpf_skc_to_tcp_sock`` (5.9+),
a ``RingBuf[Event]``. The RTT is in microseconds (the original prints whole milliseconds,
which is 0 on loopback). Needs BPF trampolines, as examples/fentry does.
"""

from __future__ import annotations

import argparse
import sys

from examples import _common
from examples.xdp import address
from generated import tcprtt

PROG = "tcprtt"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Print the RTT of every IPv4 TCP connection as it closes.",
                       attach=False)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _trace(args))


def _trace(args: argparse.Namespace) -> int:
    _common.require_root()
    budget = _common.Budget(args.duration, args.count)
    with tcprtt.load() as objs, objs.programs.tcp_close.attach() as link:
        print(f"{PROG}: attached {link.target}", file=sys.stderr, flush=True)
        if not args.json:
            print(f"{'Src addr':>15} {'Port':>6} -> {'Dest addr':>15} {'Port':>6} {'RTT (us)':>9}")
        events = objs.maps.events
        while not budget.exhausted:
            for ev in events.poll(budget.remaining(0.5)):
                row = {"src": address(ev.saddr), "sport": ev.sport, "dst": address(ev.daddr),
                       "dport": ev.dport, "srtt_us": ev.srtt_us}
                text = (f"{row['src']:>15} {ev.sport:>6} -> {row['dst']:>15} {ev.dport:>6} "
                        f"{ev.srtt_us:>9}")
                _common.emit(args.json, row, text)
                budget.spend()
                if budget.exhausted:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
