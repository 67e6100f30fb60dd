"""A twin of cilium/ebpf's examples/kprobe_percpu: execve() calls counted per CPU by a
kprobe, printed every --interval with their sum.

Run: sudo .venv/bin/python -m examples.kprobe_percpu [--interval 1] [--duration S] [--json]
Shows: a ``PerCPUArrayMap``, whose lookup gives one value per possible CPU. Needs kprobes,
as examples/kprobe does.
"""

from __future__ import annotations

import argparse
import sys

from examples import _common, _rounds
from generated import kprobe_percpu

PROG = "kprobe_percpu"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Count execve() calls per CPU with a kprobe.", count=False,
                       attach=False)
    _rounds.add_interval(p)
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _count(args))


def _count(args: argparse.Namespace) -> int:
    _common.require_root()
    with kprobe_percpu.load() as objs, objs.programs.kprobe_execve.attach() as link:
        print(f"{PROG}: attached {link.target}", file=sys.stderr, flush=True)
        counts = objs.maps.kprobe_map

        def show() -> None:
            per_cpu = list(counts[0])
            text = "\t".join(f"cpu {cpu}: {n}" for cpu, n in enumerate(per_cpu))
            _common.emit(args.json, {"per_cpu": per_cpu, "total": sum(per_cpu)},
                         f"execve called {sum(per_cpu)} times ({text})")

        return _rounds.every(args.interval, args.duration, show)


if __name__ == "__main__":
    sys.exit(main())
