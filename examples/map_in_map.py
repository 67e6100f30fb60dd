"""A twin of cilium/ebpf's examples/map_in_map: five inner arrays of random sizes created
from user space, filled with 0xCAFE and stored in an array of maps; then each entry of the
outer map is opened by its id and described, and a program reads through the outer map.

Run: sudo .venv/bin/python -m examples.map_in_map [--seed N] [--json]
Shows: ``MapOfMaps.create_inner(max_entries=...)``, ``outer[i] = inner``, ``outer[i]``
opening the stored map.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

from ebpf_gen.runtime.libbpf import map_info

from examples import _common
from generated import map_in_map

PROG = "map_in_map"


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Create maps inside a map.", count=False, attach=False)
    p.add_argument("--seed", type=int, help="random seed for the inner map sizes")
    args = p.parse_args(argv)
    return _common.run(PROG, lambda: _build(args))


def _build(args: argparse.Namespace) -> int:
    _common.require_root()
    rng = random.Random(args.seed)
    with map_in_map.load({"me": os.getpid()}) as objs:
        outer = objs.maps.outer_map
        for i in range(outer.spec.max_entries):
            size = rng.randint(1, 50)
            inner = outer.create_inner(max_entries=size)
            try:
                for j in range(size):
                    inner[j] = 0xCAFE
                outer[i] = inner
            finally:
                inner.close()  # the outer map holds its own reference once stored
        for key in sorted(outer):
            inner = outer[key]  # opened by the id the outer map holds
            try:
                info = map_info(inner.fd)
                record = {"key": key, "id": info.id, "type": info.type,
                          "max_entries": info.max_entries, "sum": sum(inner.values())}
                _common.emit(args.json, record, f"outer_map key {key}: inner map id {info.id}, "
                             f"{info.max_entries} entries of 0xCAFE")
            finally:
                inner.close()
        with objs.programs.sum_inner.attach():
            os.getppid()
        total = objs.variables.total
        _common.emit(args.json, {"read_by_bpf": total}, f"a BPF program read {total:#x} through it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
