"""Histogram printing, compared with what bcc's printers print for the same counts."""

from __future__ import annotations

import ctypes
import io

import pytest
from ebpf_gen.runtime.histogram import (
    buckets_of,
    format_linear_hist,
    format_log2_hist,
    log2_bucket,
    print_linear_hist,
    print_log2_hist,
)

# bcc's table._print_log2_hist([0, 0, 3, 10, 0, 1], "usecs", False): bcc's bucket i+1 is
# libbpf-tools' (and our) bucket i.
BCC_LOG2 = """\
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 3        |************                            |
         4 -> 7          : 10       |****************************************|
         8 -> 15         : 0        |                                        |
        16 -> 31         : 1        |****                                    |"""

# bcc's table._print_linear_hist([0, 0, 3, 1, 0, 7], "msecs", False)
BCC_LINEAR = """\
     msecs         : count     distribution
        0          : 0        |                                        |
        1          : 0        |                                        |
        2          : 3        |*****************                       |
        3          : 1        |*****                                   |
        4          : 0        |                                        |
        5          : 7        |****************************************|"""


def test_log2_matches_bcc() -> None:
    assert format_log2_hist([0, 3, 10, 0, 1, 0, 0], "usecs") == BCC_LOG2
    out = io.StringIO()
    print_log2_hist([0, 3, 10, 0, 1], "usecs", file=out)
    assert out.getvalue() == BCC_LOG2 + "\n"
    stripped = format_log2_hist([0, 3, 10, 0, 1], "usecs", strip_leading_zero=True)
    assert stripped.splitlines()[1].strip().startswith("2 -> 3")


def test_linear_matches_bcc() -> None:
    assert format_linear_hist([0, 0, 3, 1, 0, 7, 0], "msecs") == BCC_LINEAR
    text = format_linear_hist([0, 0, 3], "ms", base=100, step=10, strip_leading_zero=True)
    assert text.splitlines()[1].split()[0] == "120"


def test_wide_histogram_halves_the_stars() -> None:
    counts = [0] * 40
    counts[35] = 4
    lines = format_log2_hist(counts, "ns").splitlines()
    assert lines[0].startswith(" " * 15 + "ns")
    assert lines[-1].endswith("|" + "*" * 20 + "|")
    assert "34359738368 -> 68719476735" in lines[-1]


class Hist(ctypes.Structure):
    _fields_ = [("slots", ctypes.c_uint32 * 8), ("comm", ctypes.c_char * 16)]


def test_map_of_bucket_arrays_one_section_per_key() -> None:
    a, b = Hist(), Hist()
    a.slots[1] = 5
    b.slots[3] = 2
    out = io.StringIO()
    print_log2_hist({20: b, 10: a, 30: Hist()}, "usecs", section="pid", file=out)
    text = out.getvalue()
    assert text.index("pid = 10") < text.index("pid = 20") and "pid = 30" not in text
    assert "2 -> 3          : 5" in text and "8 -> 15         : 2" in text
    out = io.StringIO()
    print_linear_hist({1: [0, 1]}, "ms", section_fmt=lambda k: f"cpu {k}", file=out)
    assert out.getvalue().startswith("\ncpu 1\n     ms")


def test_empty_prints_nothing_and_bad_input_is_clear() -> None:
    assert format_log2_hist([0, 0]) == "" and format_linear_hist([]) == ""
    with pytest.raises(TypeError, match="bucket 1 is str"):
        format_log2_hist([1, "2"])
    with pytest.raises(ValueError, match="negative count -1"):
        format_log2_hist([-1])
    with pytest.raises(TypeError, match="sequence of counts"):
        format_log2_hist(5)
    with pytest.raises(ValueError, match="step must be a positive int"):
        format_linear_hist([1], step=0)


def test_bucket_helpers() -> None:
    assert [log2_bucket(v) for v in (0, 1, 2, 3, 4, 1023, 1024)] == [0, 0, 1, 1, 2, 9, 10]
    assert buckets_of([0, 1, 5, 1 << 70], n=8) == [2, 0, 1, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError):
        log2_bucket(-1)
