"""offcputime, after bcc/libbpf-tools: where tasks block, as symbolized kernel and user stacks
with the time spent off CPU.

Run: sudo .venv/bin/python -m examples.offcputime [--pid PID] [--duration S] [--depth N] [--json]
Shows: ``open()`` then ``set_value_size`` on a stack-trace map before load (as libbpf-tools
size theirs), ``StackTraceMap`` giving tuples of addresses, and ``symbols`` naming kernel
addresses (kallsyms) and user addresses (/proc/PID/maps + ELF symbol tables).
"""

from __future__ import annotations

import sys
import time

from ebpf_gen.runtime import symbols

from examples import _common
from generated import offcputime

PROG = "offcputime"
MAX_DEPTH = 127  # the kernel's default perf_event_max_stack


def main(argv: list[str] | None = None) -> int:
    p = _common.parser(PROG, "Summarize off-CPU time by stack trace.", count=False,
                       attach=False)
    p.add_argument("--pid", type=int, default=0, help="trace this process only")
    p.add_argument("--depth", type=int, default=MAX_DEPTH,
                   help=f"frames per stack kept by the kernel (default {MAX_DEPTH})")
    p.add_argument("--top", type=int, default=20, help="print the N stacks with most time")
    args = p.parse_args(argv)
    if not 0 <= args.pid <= 0xFFFFFFFF:
        p.error(f"--pid out of range: {args.pid}")
    if not 1 <= args.depth <= MAX_DEPTH:
        p.error(f"--depth must be in 1..{MAX_DEPTH}: {args.depth}")
    return _common.run(PROG, lambda: _trace(args))


def _trace(args: object) -> int:
    _common.require_root()
    pid, depth = getattr(args, "pid"), getattr(args, "depth")  # noqa: B009
    budget = _common.Budget(getattr(args, "duration"))  # noqa: B009
    with offcputime.open() as opened:
        opened.set_constants({"targ_tgid": pid})
        opened.set_value_size("stackmap", depth * 8)
        with opened.load() as objs, objs.programs.sched_switch.attach():
            users: dict[int, symbols.UserSymbols | None] = {}
            try:
                if not getattr(args, "json"):  # noqa: B009
                    print("Tracing off-CPU time (us)... Hit Ctrl-C to end.", flush=True)
                while not budget.exhausted:
                    time.sleep(budget.remaining(0.5))
                    _remember_maps(objs, users)  # while the processes still live
            except KeyboardInterrupt:
                pass
            _report(objs, users, getattr(args, "top"), getattr(args, "json"))  # noqa: B009
    return 0


def _remember_maps(objs: offcputime.Objects, users: dict[int, symbols.UserSymbols | None]
                   ) -> None:
    for key in objs.maps.info:
        if key.tgid not in users:
            try:
                users[key.tgid] = symbols.UserSymbols(key.tgid)
            except OSError:  # exited already: its user frames stay unnamed
                users[key.tgid] = None


def _frames(objs: offcputime.Objects, stack_id: int,
            user: symbols.UserSymbols | None) -> list[str]:
    if stack_id < 0:
        return ["[missing]"]
    try:
        addrs = objs.maps.stackmap[stack_id]
    except KeyError:
        return ["[missing]"]
    return [str(s) for s in symbols.symbolize(addrs, user=user)]


def _report(objs: offcputime.Objects, users: dict[int, symbols.UserSymbols | None], top: int,
            as_json: bool) -> None:
    _remember_maps(objs, users)
    entries = sorted(objs.maps.info.items(), key=lambda kv: kv[1], reverse=True)[:top]
    for key, total in entries:
        kernel = _frames(objs, key.kern_stack_id, None)
        user = _frames(objs, key.user_stack_id, users.get(key.tgid))
        comm = key.comm.decode(errors="replace")
        if as_json:
            _common.emit(True, {"pid": key.pid, "tgid": key.tgid, "comm": comm,
                                "kernel": kernel, "user": user, "usecs": total}, "")
            continue
        lines = [f"    {f}" for f in kernel] + ["    --"] + [f"    {f}" for f in user]
        lines.append(f"    -                {comm} ({key.pid})")
        lines.append(f"        {total}")
        print("\n".join(lines) + "\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
