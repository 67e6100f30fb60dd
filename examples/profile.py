"""A profile-style sampler: the cpu-clock sampled on every CPU by a perf_event program,
samples counted per process, the busiest printed every --interval.

Run: sudo .venv/bin/python -m examples.profile [--frequency 99] [--top 10] [--interval 1]
     [--duration S] [--json]
Shows: ``attach_perf_event(frequency=...)`` (one perf event per CPU, one ``LinkGroup``), a
hash map with a struct key (pid, comm).
"""

from __future__ import annotations

import argparse
import sys

from examples import _common, _rounds
from generated import profile

PROG = "profile"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Sample on-CPU processes.", count=False, attach=False)
    p.add_argument("--frequency", type=int, default=99, help="samples per second per CPU")
    p.add_argument("--top", type=int, default=10, help="processes shown per round")
    _rounds.add_interval(p)
    args = p.parse_args(argv)
    if args.frequency <= 0 or args.top <= 0:
        p.error("--frequency and --top must be > 0")
    return _common.run(PROG, lambda: _sample(args))


def _sample(args: argparse.Namespace) -> int:
    _common.require_root()
    with profile.load() as objs:
        link = objs.programs.on_sample.attach_perf_event(frequency=args.frequency)
        with link:
            samples = objs.maps.samples

            def show() -> None:
                rows = sorted(
                    ((n, k.pid, k.comm.decode(errors="replace")) for k, n in samples.items()),
                    reverse=True,
                )[: args.top]
                text = "\n".join(f"{n:6} {pid:>7} {comm}" for n, pid, comm in rows)
                record = {
                    "cpus": len(link.links),
                    "idle": objs.variables.idle,
                    "top": [{"pid": pid, "comm": comm, "samples": n} for n, pid, comm in rows],
                }
                _common.emit(args.json, record, text or "(no samples yet)")

            return _rounds.every(args.interval, args.duration, show)


if __name__ == "__main__":
    sys.exit(main())
