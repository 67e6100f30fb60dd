"""Learning eBPF, chapter 2, hello-buffer.py: one record per execve() sent to user space.

Run: sudo .venv/bin/python -m examples.hello_buffer [--ringbuf] [--count N] [--duration S] [--json]
Shows: a reader opened on request on ``PerfEventArray[DataT]`` / ``RingBuf[DataT]``, yielding
decoded ``DataT`` records, where struct data_t is a type clang left out of BTF and ebpf-gen
recovered from the C source.
"""

from __future__ import annotations

import argparse
import sys

from examples import _common
from examples._common import Attach
from generated import hello_buffer

PROG = "hello_buffer"
# Each program pair writes to one map; the other three programs are not loaded.
PROGRAMS = {
    (False, Attach.KPROBE): "hello",
    (False, Attach.TRACEPOINT): "hello_tp",
    (True, Attach.KPROBE): "hello_rb",
    (True, Attach.TRACEPOINT): "hello_rb_tp",
}


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Print pid, uid, command and message for every execve().")
    p.add_argument(
        "--ringbuf",
        action="store_true",
        help="receive through the BPF ring buffer `rb` instead of the perf event array `output`",
    )
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _trace(args))


def _trace(args: argparse.Namespace) -> int:
    ringbuf: bool = args.ringbuf
    _common.require_root()
    mode = _common.choose_attach(args.attach)
    _common.ensure_tracefs()
    chosen = PROGRAMS[(ringbuf, mode)]
    budget = _common.Budget(args.duration, args.count)
    # a literal in the call: mypy checks each name against the object's programs
    with hello_buffer.load(
        autoload={
            "hello": chosen == "hello",
            "hello_tp": chosen == "hello_tp",
            "hello_rb": chosen == "hello_rb",
            "hello_rb_tp": chosen == "hello_rb_tp",
        }
    ) as objs:
        programs = {
            "hello": objs.programs.hello,
            "hello_tp": objs.programs.hello_tp,
            "hello_rb": objs.programs.hello_rb,
            "hello_rb_tp": objs.programs.hello_rb_tp,
        }
        # Only the chosen map gets a reader (perf rings on every CPU, or the ring's mmap),
        # opened before the attach so that no event finds the perf map without one.
        events = (objs.maps.rb if ringbuf else objs.maps.output).reader()
        with events, programs[chosen].attach():
            try:
                while not budget.exhausted:
                    for event in events.poll(budget.remaining(0.5)):
                        _print_event(event, args.json)
                        budget.spend()
                        if budget.exhausted:
                            break
            except KeyboardInterrupt:
                pass
            lost = events.lost
    if lost:
        print(f"{PROG}: {lost} event(s) lost (the consumer fell behind)", file=sys.stderr)
    return 0


def _print_event(event: hello_buffer.DataT, as_json: bool) -> None:
    # _asdict(): the struct's members as plain values (char arrays as str), in C order
    record = event._asdict()
    _common.emit(as_json, record, " ".join(str(v) for v in record.values()))


if __name__ == "__main__":
    sys.exit(main())
