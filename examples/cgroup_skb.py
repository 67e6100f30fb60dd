"""A twin of cilium/ebpf's examples/cgroup_skb: the egress packets of a cgroup, counted.

Run: sudo .venv/bin/python -m examples.cgroup_skb [--cgroup PATH] [--interval 1]
     [--duration S] [--json]
Shows: ``attach_cgroup(path)`` on a cgroup v2 directory (by default the root of the first
cgroup v2 mount), an ``ArrayMap`` read by index.
"""

from __future__ import annotations

import argparse
import sys

from ebpf_gen.runtime.diagnose import cgroup2_mounts

from examples import _common, _rounds
from generated import cgroup_skb

PROG = "cgroup_skb"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count a cgroup's egress packets.", count=False, attach=False)
    p.add_argument("--cgroup", help="cgroup v2 directory (default: the cgroup v2 root)")
    _rounds.add_interval(p)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _count(args))


def _count(args: argparse.Namespace) -> int:
    _common.require_root()
    path = args.cgroup
    if path is None:
        mounts = cgroup2_mounts()
        if not mounts:
            raise _common.Fatal("cgroup v2 is not mounted (mount -t cgroup2 none /sys/fs/cgroup)")
        path = mounts[0]
    with cgroup_skb.load() as objs, objs.programs.count_egress_packets.attach_cgroup(path):
        counts = objs.maps.pkt_count

        def show() -> None:
            n = counts[0]
            _common.emit(args.json, {"cgroup": path, "packets": n}, f"{path}: {n} packets")

        return _rounds.every(args.interval, args.duration, show)


if __name__ == "__main__":
    sys.exit(main())
