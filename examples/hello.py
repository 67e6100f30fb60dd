"""Learning eBPF, chapter 2, hello.py: "Hello World!" in the trace pipe on every execve().

Run: sudo .venv/bin/python -m examples.hello [--count N] [--duration S] [--json]
Shows: ``load(autoload=...)``, ``Program.attach()`` as a context manager, and
``ebpf_gen.runtime.trace_pipe()`` reading what ``bpf_printk`` wrote.
"""

from __future__ import annotations

import argparse
import sys

from examples import _common
from examples._common import Attach
from generated import hello

PROG = "hello"
MESSAGE = "Hello World!"


def main(argv: list[str] | None = None) -> int:
    args = _common.parser(PROG, 'Print "Hello World!" for every execve().').parse_args(argv)
    return _common.run(PROG, lambda: _trace(args))


def _trace(args: argparse.Namespace) -> int:
    _common.require_root()
    mode = _common.choose_attach(args.attach)
    _common.ensure_tracefs()
    kprobe = mode is Attach.KPROBE
    budget = _common.Budget(args.duration, args.count)
    with hello.load(autoload={"hello": kprobe, "hello_tp": not kprobe}) as objs:
        program = objs.programs.hello if kprobe else objs.programs.hello_tp
        _common.drain_trace_pipe()
        with program.attach():
            # The trace pipe is shared by every BPF program and tracer on the machine:
            # only this program's line is shown (the book shows them all).
            for record in _common.trace_records(budget, lambda m: m == MESSAGE):
                _common.emit(args.json, _common.trace_json(record), _common.trace_line(record))
                budget.spend()
    return 0


if __name__ == "__main__":
    sys.exit(main())
