"""A twin of cilium/ebpf's examples/tracepoint_in_c: kmem/mm_page_alloc events counted by
a tracepoint program, the total printed every --interval.

Run: sudo .venv/bin/python -m examples.tracepoint_in_c [--interval 1] [--duration S] [--json]
Shows: ``attach_all()`` (the section names the tracepoint), an ``ArrayMap`` read by index.
"""

from __future__ import annotations

import argparse
import sys

from examples import _common, _rounds
from generated import tracepoint_in_c

PROG = "tracepoint_in_c"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count page allocations.", count=False, attach=False)
    _rounds.add_interval(p)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _count(args))


def _count(args: argparse.Namespace) -> int:
    _common.require_root()
    _common.ensure_tracefs()
    with tracepoint_in_c.load() as objs:
        objs.attach_all(strict=True)  # every program names its tracepoint: none left over
        counts = objs.maps.counting_map

        def show() -> None:
            n = counts[0]
            _common.emit(args.json, {"mm_page_alloc": n}, f"mm_page_alloc called {n} times")

        return _rounds.every(args.interval, args.duration, show)


if __name__ == "__main__":
    sys.exit(main())
