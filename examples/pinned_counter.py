"""execve() calls per UID, counted in a pinned map whose counts survive app restarts.

Run: sudo .venv/bin/python -m examples.pinned_counter [--pin-root DIR] [--duration S] [--json]
     sudo .venv/bin/python -m examples.pinned_counter --reset     # unpin: start from zero
Shows: ``load(pin_root=...)`` with a map declared ``__uint(pinning, LIBBPF_PIN_BY_NAME)``:
the first run creates and pins the map, later runs reuse it, so counting resumes where the
previous run stopped. DIR must be on a bpffs (default /sys/fs/bpf/ebpf_gen_pinned_counter).
"""

from __future__ import annotations

import os
import sys
import time

from examples import _common
from generated import pinned_counter

PROG = "pinned_counter"
DEFAULT_ROOT = "/sys/fs/bpf/ebpf_gen_pinned_counter"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count execve() per UID in a map pinned across runs.",
                       count=False, attach=False)
    p.add_argument("--pin-root", default=DEFAULT_ROOT, help=f"bpffs directory ({DEFAULT_ROOT})")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS")
    p.add_argument("--reset", action="store_true", help="unpin the map and exit")
    args = p.parse_args(argv)
    if args.interval <= 0:
        p.error(f"--interval must be > 0: {args.interval}")
    return _common.run(PROG, lambda: _count(args.pin_root, args.interval, args.duration,
                                            args.json, args.reset))


def _count(root: str, interval: float, duration: float | None, as_json: bool,
           reset: bool) -> int:
    _common.require_root()
    pin = os.path.join(root, "exec_counts")
    if reset:
        if os.path.exists(pin):
            os.unlink(pin)
        print(f"unpinned {pin}" if not as_json else '{"reset": true}', flush=True)
        return 0
    resumed = os.path.exists(pin)
    try:
        objs = pinned_counter.load(pin_root=root)
    except Exception as e:  # NotOnBpffsError and libbpf's refusals: one line, exit 1
        from ebpf_gen.runtime import NotOnBpffsError

        if isinstance(e, NotOnBpffsError):
            raise _common.Fatal(str(e)) from None
        raise
    budget = _common.Budget(duration)
    with objs, objs.programs.count_exec.attach():
        counts = objs.maps.exec_counts
        _common.emit(as_json, {"pinned": pin, "resumed": resumed},
                     f"{'resuming counts from' if resumed else 'new map pinned at'} {pin}")
        try:
            while True:
                time.sleep(budget.remaining(interval))
                now = sorted(counts.items())
                _common.emit(as_json, {"counts": [{"uid": u, "count": c} for u, c in now]},
                             "\t".join(f"UID {u}: {c}" for u, c in now))
                if budget.exhausted:
                    return 0
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
