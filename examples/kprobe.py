"""A twin of cilium/ebpf's examples/kprobe: execve() calls counted by a kprobe, printed
every --interval.

Run: sudo .venv/bin/python -m examples.kprobe [--interval 1] [--duration S] [--json]
Shows: a kprobe attached by its section (``ksyscall/execve``) and an ``ArrayMap`` read by
index. Needs kprobes (CONFIG_KPROBES): without them it stops with the runtime's diagnosis;
examples/ringbuffer and examples/hello fall back to a tracepoint instead.
"""

from __future__ import annotations

import argparse
import sys

from examples import _common, _rounds
from generated import kprobe

PROG = "kprobe"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count execve() calls with a kprobe.", count=False, attach=False)
    _rounds.add_interval(p)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _count(args))


def _count(args: argparse.Namespace) -> int:
    _common.require_root()
    with kprobe.load() as objs, objs.programs.kprobe_execve.attach() as link:
        print(f"{PROG}: attached {link.target}", file=sys.stderr, flush=True)
        counts = objs.maps.kprobe_map

        def show() -> None:
            n = counts[0]
            _common.emit(args.json, {"calls": n}, f"execve called {n} times")

        return _rounds.every(args.interval, args.duration, show)


if __name__ == "__main__":
    sys.exit(main())
