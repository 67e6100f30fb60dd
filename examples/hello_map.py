"""Learning eBPF, chapter 2, hello-map.py: execve() calls counted per UID in a BPF hash map.

Run: sudo .venv/bin/python -m examples.hello_map [--interval 2] [--duration S] [--json]
Shows: a typed ``HashMap[int, int]`` read from Python (``.items()``), and ``autoload`` to
leave out the program of the attach mode not chosen.
"""

from __future__ import annotations

import sys
import time

from examples import _common
from examples._common import Attach
from generated import hello_map

PROG = "hello_map"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count execve() calls per user ID.", count=False)
    p.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="print the counts every this many seconds (default 2)",
    )
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error(f"--interval must be > 0: {args.interval}")
    return _common.run(PROG, lambda: _trace(args.attach, args.interval, args.duration, args.json))


def _trace(attach: str, interval: float, duration: float | None, as_json: bool) -> int:
    _common.require_root()
    mode = _common.choose_attach(attach)
    _common.ensure_tracefs()
    kprobe = mode is Attach.KPROBE
    budget = _common.Budget(duration)
    with hello_map.load(autoload={"hello": kprobe, "hello_tp": not kprobe}) as objs:
        program = objs.programs.hello if kprobe else objs.programs.hello_tp
        with program.attach():
            try:
                while True:
                    # One round per interval; when the deadline cuts an interval short, the
                    # counts so far are still printed once.
                    time.sleep(budget.remaining(interval))
                    _print_round(objs.maps.counter_table.items(), as_json)
                    if budget.exhausted:
                        return 0
            except KeyboardInterrupt:
                return 0


def _print_round(items: object, as_json: bool) -> None:
    counts = sorted(items)  # type: ignore[call-overload]
    text = "\t".join(f"ID {uid}: {count}" for uid, count in counts)
    _common.emit(as_json, {"counts": [{"uid": u, "count": c} for u, c in counts]}, text)


if __name__ == "__main__":
    sys.exit(main())
