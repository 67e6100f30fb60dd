"""Log2 and linear histograms printed like bcc's print_log2_hist / print_linear_hist.

Buckets follow libbpf-tools' convention (bits.bpf.h ``log2l``): bucket ``i`` of a log2
histogram counts values in [2**i, 2**(i+1) - 1], bucket 0 counts 0 and 1. Give a list of
counts, a ctypes array (a map value's ``slots`` field), or a mapping of such per key
(one section per key, like bcc's ``section_header``).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, TextIO

STARS_MAX = 40


def _counts(buckets: Any, what: str) -> list[int]:
    slots = getattr(buckets, "slots", buckets)  # a struct hist { __u32 slots[N]; ... }
    if isinstance(slots, (str, bytes)):
        raise TypeError(f"{what}: buckets must be a sequence of counts, got "
                        f"{type(slots).__name__}")
    try:
        counts = list(slots)
    except TypeError:
        raise TypeError(f"{what}: buckets must be a sequence of counts, got "
                        f"{type(buckets).__name__}") from None
    for i, c in enumerate(counts):
        if not isinstance(c, int) or isinstance(c, bool):
            raise TypeError(f"{what}: bucket {i} is {type(c).__name__}, not an int count")
        if c < 0:
            raise ValueError(f"{what}: bucket {i} has a negative count {c}")
    return counts


def _stars(val: int, val_max: int, width: int) -> str:
    n = min(val, val_max) * width // val_max if val_max else 0
    text = "*" * n
    if val > val_max:
        text = text[:-1] + "+"
    return text.ljust(width)


def format_log2_hist(buckets: Any, val_type: str = "value", *,
                     strip_leading_zero: bool = False) -> str:
    """The text of a log2 histogram (no trailing newline; empty when all counts are 0)."""
    counts = _counts(buckets, "log2 histogram")
    idx_max = max((i for i, c in enumerate(counts) if c), default=-1)
    if idx_max < 0:
        return ""
    val_max = max(counts)
    wide = idx_max > 32
    width, stars = (20, STARS_MAX // 2) if wide else (10, STARS_MAX)
    header = (f"{'':15}{val_type:<29}" if wide else f"{'':5}{val_type:<19}")
    lines = [f"{header} : count     distribution"]
    for i in range(idx_max + 1):
        low, high = (1 << (i + 1)) >> 1, (1 << (i + 1)) - 1
        if low == high:
            low -= 1
        val = counts[i]
        if strip_leading_zero:
            if not val:
                continue
            strip_leading_zero = False
        lines.append(f"{low:>{width}} -> {high:<{width}} : {val:<8} "
                     f"|{_stars(val, val_max, stars)}|")
    return "\n".join(lines)


def format_linear_hist(buckets: Any, val_type: str = "value", *, base: int = 0,
                       step: int = 1, strip_leading_zero: bool = False) -> str:
    """The text of a linear histogram: bucket ``i`` counts values base + i * step up to
    the next; rows up to the last non-zero bucket."""
    if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
        raise ValueError(f"linear histogram: step must be a positive int, got {step!r}")
    if not isinstance(base, int) or isinstance(base, bool):
        raise TypeError(f"linear histogram: base must be an int, got {type(base).__name__}")
    counts = _counts(buckets, "linear histogram")
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return ""
    val_max = max(counts)
    lines = [f"{'':5}{val_type:<13} : count     distribution"]
    for i in range(used[0] if strip_leading_zero else 0, used[-1] + 1):
        lines.append(f"{'':8}{base + i * step:<10} : {counts[i]:<8} "
                     f"|{_stars(counts[i], val_max, STARS_MAX)}|")
    return "\n".join(lines)


def _sections(hists: Mapping[Any, Any], section: str, fmt: Callable[[Any], str] | None,
              one: Callable[[Any], str]) -> str:
    parts = []
    for key in sorted(hists, key=_sort_key):
        text = one(hists[key])
        if text:
            label = fmt(key) if fmt else f"{section} = {key!r}"
            parts.append(f"\n{label}\n{text}")
    return "\n".join(parts)


def _sort_key(key: Any) -> Any:
    return (0, key) if isinstance(key, (int, float)) else (1, repr(key))


def print_log2_hist(buckets: Any, val_type: str = "value", *, section: str = "key",
                    section_fmt: Callable[[Any], str] | None = None,
                    strip_leading_zero: bool = False, file: TextIO | None = None) -> None:
    """Print a log2 histogram like bcc's ``print_log2_hist``: ``buckets`` is a list of
    counts (or a struct with ``slots``), or a mapping (a map's ``lookup_batch()``, or the
    map itself) of key -> buckets, printed one section per key: ``section = key``."""
    out = file if file is not None else sys.stdout
    if hasattr(buckets, "keys") and hasattr(buckets, "__getitem__"):
        snapshot = dict(buckets.items())
        text = _sections(snapshot, section, section_fmt, lambda b: format_log2_hist(
            b, val_type, strip_leading_zero=strip_leading_zero))
    else:
        text = format_log2_hist(buckets, val_type, strip_leading_zero=strip_leading_zero)
    if text:
        print(text, file=out)


def print_linear_hist(buckets: Any, val_type: str = "value", *, base: int = 0, step: int = 1,
                      section: str = "key", section_fmt: Callable[[Any], str] | None = None,
                      strip_leading_zero: bool = False, file: TextIO | None = None) -> None:
    """Print a linear histogram like bcc's ``print_linear_hist`` (mapping: per key)."""
    out = file if file is not None else sys.stdout
    if hasattr(buckets, "keys") and hasattr(buckets, "__getitem__"):
        snapshot = dict(buckets.items())
        text = _sections(snapshot, section, section_fmt,
                         lambda b: format_linear_hist(b, val_type, base=base, step=step,
                                                      strip_leading_zero=strip_leading_zero))
    else:
        text = format_linear_hist(buckets, val_type, base=base, step=step,
                                  strip_leading_zero=strip_leading_zero)
    if text:
        print(text, file=out)


def log2_bucket(value: int) -> int:
    """The bucket a value falls in (what the BPF side's log2l computes)."""
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"log2_bucket: {value!r} is not a non-negative int")
    return max(value.bit_length() - 1, 0)


def buckets_of(values: Iterable[int], n: int = 64) -> list[int]:
    """Counts per log2 bucket of ``values`` (the last bucket takes the larger ones)."""
    counts = [0] * n
    for v in values:
        counts[min(log2_bucket(v), n - 1)] += 1
    return counts
