"""Learning eBPF, chapter 2, hello-tail.py: tail calls chosen by syscall number.

Run: sudo .venv/bin/python -m examples.hello_tail [--print-syscall NR]... [--count N]
     [--duration S] [--json]
Shows: filling a ``ProgArray`` from Python (``objs.maps.syscall[nr] = program``), programs
loaded only to be tail-called, and ``attach()`` of a raw tracepoint.
"""

from __future__ import annotations

import argparse
import re
import sys

from examples import _common
from generated import hello_tail

PROG = "hello_tail"
SLOTS = 500  # max_entries of the `syscall` program array
EXECVE = 59
TIMER_SYSCALLS = range(222, 227)  # x86-64: timer_create .. timer_delete
OWN_MESSAGES = re.compile(
    r"Executing a program|Creating a timer|Deleting a timer|Some other timer operation"
    r"|Syscall: \d+|Another syscall: -?\d+"
)


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(
        PROG, "Trace execve() and the POSIX timer syscalls through tail calls.", attach=False
    )
    p.add_argument(
        "--print-syscall",
        type=_syscall_nr,
        action="append",
        default=[],
        metavar="NR",
        help="also print every syscall with this number (x86-64 "
        "numbering, e.g. 61 for wait4); repeatable",
    )
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _trace(args))


def _syscall_nr(text: str) -> int:
    try:
        nr = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a syscall number: {text!r}") from None
    if not 0 <= nr < SLOTS:
        raise argparse.ArgumentTypeError(f"syscall number must be in 0..{SLOTS - 1}: {nr}")
    return nr


def _trace(args: argparse.Namespace) -> int:
    _common.require_root()
    _common.ensure_tracefs()
    budget = _common.Budget(args.duration, args.count)
    with hello_tail.load() as objs:
        table, programs = objs.maps.syscall, objs.programs
        # Every slot gets a program so that the dispatcher's fallback printk never fires
        # for the syscalls nobody asked about.
        for nr in range(SLOTS):
            table[nr] = programs.ignore_opcode
        table[EXECVE] = programs.hello_exec
        for nr in TIMER_SYSCALLS:
            table[nr] = programs.hello_timer
        for nr in args.print_syscall:
            table[nr] = programs.print_syscall
        _common.drain_trace_pipe()
        with programs.hello.attach():
            for record in _common.trace_records(budget, OWN_MESSAGES.fullmatch):
                _common.emit(args.json, _common.trace_json(record), _common.trace_line(record))
                budget.spend()
    return 0


if __name__ == "__main__":
    sys.exit(main())
