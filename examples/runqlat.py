"""runqlat, after bcc/libbpf-tools: run queue latency as a log2 histogram of microseconds.

Run: sudo .venv/bin/python -m examples.runqlat [--interval S] [--duration S] [--pid PID] [--json]
Shows: tp_btf programs reading kernel structs through CO-RE, an ARRAY map of a struct of
bucket counts, and ``print_log2_hist`` printing it as bcc does.
"""

from __future__ import annotations

import sys
import time

from ebpf_gen.runtime import print_log2_hist

from examples import _common
from generated import runqlat

PROG = "runqlat"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Summarize run queue (scheduler) latency as a histogram.",
                       count=False, attach=False)
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="print a histogram every this many seconds (default 1)")
    p.add_argument("--pid", type=int, default=0, help="trace this process only")
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error(f"--interval must be > 0: {args.interval}")
    if not 0 <= args.pid <= 0xFFFFFFFF:
        p.error(f"--pid out of range: {args.pid}")
    return _common.run(PROG, lambda: _trace(args.interval, args.duration, args.pid, args.json))


def _trace(interval: float, duration: float | None, pid: int, as_json: bool) -> int:
    _common.require_root()
    budget = _common.Budget(duration)
    with runqlat.load(constants={"targ_tgid": pid}) as objs:
        links = [program.attach() for program in (objs.programs.sched_wakeup,
                                                  objs.programs.sched_wakeup_new,
                                                  objs.programs.sched_switch)]
        try:
            if not as_json:
                print("Tracing run queue latency... Hit Ctrl-C to end.", flush=True)
            while True:
                time.sleep(budget.remaining(interval))
                hist = objs.maps.hists
                slots = list(hist[0].slots)
                hist[0] = runqlat.Hist()  # zeroed for the next interval
                if as_json:
                    _common.emit(True, {"usecs_log2_slots": slots}, "")
                else:
                    print()
                    print_log2_hist(slots, "usecs")
                    sys.stdout.flush()
                if budget.exhausted:
                    return 0
        except KeyboardInterrupt:
            return 0
        finally:
            for link in links:
                link.close()


if __name__ == "__main__":
    sys.exit(main())
