"""A twin of cilium/ebpf's examples/ringbuffer: pid and command of every execve(), read
from a BPF ring buffer.

Run: sudo .venv/bin/python -m examples.ringbuffer [--attach auto|kprobe|tracepoint]
     [--count N] [--duration S] [--json]
Shows: a ``RingBuf[Event]`` polled for typed events; ``autoload`` choosing the kprobe or
its tracepoint twin.
"""

from __future__ import annotations

import argparse
import sys

from examples import _common
from examples._common import Attach
from generated import ringbuffer

PROG = "ringbuffer"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Print the pid and command of every execve().")
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _trace(args))


def _trace(args: argparse.Namespace) -> int:
    _common.require_root()
    kprobe = _common.choose_attach(args.attach) is Attach.KPROBE
    if not kprobe:
        _common.ensure_tracefs()
    budget = _common.Budget(args.duration, args.count)
    with ringbuffer.load(autoload={"kprobe_execve": kprobe, "kprobe_execve_tp": not kprobe}) as o:
        result = o.attach_all()  # the one loaded program; the other is listed as skipped
        print(f"{PROG}: attached {', '.join(link.target for link in result.links)}",
              file=sys.stderr, flush=True)
        events = o.maps.events
        while not budget.exhausted:
            for ev in events.poll(budget.remaining(0.5)):
                comm = ev.comm.decode(errors="replace")
                text = f"pid: {ev.pid}\tcomm: {comm}"
                _common.emit(args.json, {"pid": ev.pid, "comm": comm}, text)
                budget.spend()
                if budget.exhausted:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main())
