"""What the networking and profiling twins share: print a map's state every --interval."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from examples import _common


def add_interval(p: argparse.ArgumentParser, default: float = 1.0) -> None:
    p.add_argument(
        "--interval",
        type=float,
        default=default,
        metavar="SECONDS",
        help=f"print every this many seconds (default {default:g})",
    )


def every(interval: float, duration: float | None, show: Callable[[], None]) -> int:
    """``show()`` once right away (the app is attached: the line says so), then every
    ``interval`` until --duration or Ctrl-C; once more at the end."""
    if interval <= 0:
        raise _common.Fatal(f"--interval must be > 0: {interval}")
    budget = _common.Budget(duration)
    show()
    try:
        while not budget.exhausted:
            time.sleep(budget.remaining(interval))
            show()
    except KeyboardInterrupt:
        pass
    return 0
