"""A twin of cilium/ebpf's examples/kprobepin: examples/kprobe with its counter in a map
pinned on the BPF filesystem, so the next run resumes the count.

Run: sudo .venv/bin/python -m examples.kprobepin [--pin-root DIR] [--interval 1]
     [--duration S] [--json]
     sudo .venv/bin/python -m examples.kprobepin --reset   # unpin: start from zero
Shows: ``load(pin_root=...)`` with ``__uint(pinning, LIBBPF_PIN_BY_NAME)``: the first run
pins ``DIR/kprobe_map``, later runs reuse it (as cilium's ``MapOptions.PinPath``). DIR must
be on a bpffs (default /sys/fs/bpf/kprobepin). Needs kprobes, as examples/kprobe does.
"""

from __future__ import annotations

import argparse
import os
import sys

from ebpf_gen.runtime import NotOnBpffsError

from examples import _common, _rounds
from generated import kprobepin

PROG = "kprobepin"
DEFAULT_ROOT = "/sys/fs/bpf/kprobepin"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count execve() calls in a pinned map.", count=False, attach=False)
    p.add_argument("--pin-root", default=DEFAULT_ROOT, help=f"bpffs directory ({DEFAULT_ROOT})")
    p.add_argument("--reset", action="store_true", help="unpin the map and exit")
    _rounds.add_interval(p)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _count(args))


def _count(args: argparse.Namespace) -> int:
    _common.require_root()
    pin = os.path.join(args.pin_root, "kprobe_map")
    if args.reset:
        if os.path.exists(pin):
            os.unlink(pin)
        _common.emit(args.json, {"reset": pin}, f"unpinned {pin}")
        return 0
    resumed = os.path.exists(pin)
    try:
        objs = kprobepin.load(pin_root=args.pin_root)
    except NotOnBpffsError as e:
        raise _common.Fatal(str(e)) from None
    with objs, objs.programs.kprobe_execve.attach() as link:
        print(f"{PROG}: attached {link.target}", file=sys.stderr, flush=True)
        counts = objs.maps.kprobe_map
        _common.emit(args.json, {"pinned": pin, "resumed": resumed},
                     f"{'resuming the count in' if resumed else 'new map pinned at'} {pin}")

        def show() -> None:
            n = counts[0]
            _common.emit(args.json, {"calls": n}, f"execve called {n} times")

        return _rounds.every(args.interval, args.duration, show)


if __name__ == "__main__":
    sys.exit(main())
