"""A twin of cilium/ebpf's examples/tcprtt_sockops: every new smoothed RTT of the IPv4 TCP
connections a cgroup's processes make or accept, from a sockops program on the cgroup.

Run: sudo .venv/bin/python -m examples.tcprtt_sockops [--cgroup PATH] [--count N]
     [--duration S] [--json]
Shows: ``attach_cgroup(path)`` for a ``sockops`` program that turns on the kernel's RTT
callback per connection (``bpf_sock_ops_cb_flags_set``), a hash map of the established
connections, a ``RingBuf[RttEvent]``. No trampolines or kprobes: runs wherever cgroup v2
is mounted (by default on its root, so every connection on the machine). The RTT is in
microseconds (the original prints whole milliseconds, which is 0 on loopback).
"""

from __future__ import annotations

import argparse
import sys

from ebpf_gen.runtime.diagnose import cgroup2_mounts

from examples import _common
from examples.xdp import address
from generated import tcprtt_sockops

PROG = "tcprtt_sockops"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Print the RTT samples of a cgroup's TCP connections.",
                       attach=False)
    p.add_argument("--cgroup", help="cgroup v2 directory (default: the cgroup v2 root)")
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _trace(args))


def _trace(args: argparse.Namespace) -> int:
    _common.require_root()
    path = args.cgroup
    if path is None:
        mounts = cgroup2_mounts()
        if not mounts:
            raise _common.Fatal("cgroup v2 is not mounted (mount -t cgroup2 none /sys/fs/cgroup)")
        path = mounts[0]
    budget = _common.Budget(args.duration, args.count)
    with tcprtt_sockops.load() as objs, objs.programs.bpf_sockops_cb.attach_cgroup(path):
        print(f"{PROG}: attached to cgroup {path}", file=sys.stderr, flush=True)
        if not args.json:
            print(f"{'Src addr':>15} {'Port':>6} -> {'Dest addr':>15} {'Port':>6} "
                  f"{'RTT (us)':>9} Reported by")
        events = objs.maps.rtt_events
        while not budget.exhausted:
            for ev in events.poll(budget.remaining(0.5)):
                side = "server" if ev.passive else "client"
                row = {"src": address(ev.saddr), "sport": ev.sport, "dst": address(ev.daddr),
                       "dport": ev.dport, "srtt_us": ev.srtt_us, "by": side}
                text = (f"{row['src']:>15} {ev.sport:>6} -> {row['dst']:>15} {ev.dport:>6} "
                        f"{ev.srtt_us:>9} {side}")
                _common.emit(args.json, row, text)
                budget.spend()
                if budget.exhausted:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
