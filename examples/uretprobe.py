"""A twin of cilium/ebpf's examples/uretprobe: every line bash's readline() returns,
printed with the pid of the shell that read it.

Run: sudo .venv/bin/python -m examples.uretprobe [--binary /bin/bash] [--pid N]
     [--duration S] [--json]
Shows: ``attach_uprobe(binary, "readline", retprobe=True)``, a ``PerfEventArray[Event]``.
"""

from __future__ import annotations

import argparse
import sys

from examples import _common
from generated import uretprobe

PROG = "uretprobe"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Print the lines bash reads.", attach=False)
    p.add_argument("--binary", default="/bin/bash", help="the bash to probe (default /bin/bash)")
    p.add_argument("--pid", type=int, default=-1, help="only this process")
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _trace(args))


def _trace(args: argparse.Namespace) -> int:
    _common.require_root()
    budget = _common.Budget(args.duration, args.count)
    with uretprobe.load() as objs:
        prog = objs.programs.uretprobe_bash_readline
        with prog.attach_uprobe(args.binary, "readline", pid=args.pid, retprobe=True):
            print(f"{PROG}: attached to readline in {args.binary}", file=sys.stderr, flush=True)
            events = objs.maps.events
            while not budget.exhausted:
                for ev in events.poll(budget.remaining(0.5)):
                    line = ev.line.decode(errors="replace")
                    _common.emit(args.json, {"pid": ev.pid, "line": line},
                                 f"{args.binary}:readline return value: {line}")
                    budget.spend()
    return 0


if __name__ == "__main__":
    sys.exit(main())
