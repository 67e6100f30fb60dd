"""Live globals: arrays and struct fields of .data/.bss are views onto the mapped section."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

import pytest

pytestmark = pytest.mark.kernel

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct cfg { __u32 scale; __u64 offset; };

__u32 freqs_mhz[2] = {};
struct cfg config = {};
__u64 seen_freq = 0;
__u64 seen_cfg = 0;
__u32 counter = 0;
const volatile __u32 me = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != me)
        return 0;
    seen_freq = freqs_mhz[0] + freqs_mhz[1];
    seen_cfg = (__u64)config.scale * 1000 + config.offset;
    freqs_mhz[1] += 1;
    counter++;
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_element_and_field_writes_reach_the_kernel(
    skeleton: Callable[[str, str], ModuleType],
) -> None:
    mod = skeleton("rt_vars", SOURCE)
    with mod.load(constants={"me": os.getpid()}) as objs:
        v = objs.variables
        v.freqs_mhz[0] = 1234
        v.config.scale = 3
        v.config.offset = 7
        assert list(v.freqs_mhz) == [1234, 0]
        with objs.programs.on_getppid.attach():
            os.getppid()
        assert v.seen_freq == 1234
        assert v.seen_cfg == 3007
        freqs = v.freqs_mhz  # a view: sees what the program wrote
        assert freqs[1] == 1 and v.counter == 1
        with objs.programs.on_getppid.attach():
            os.getppid()
        assert freqs[1] == 2 and v.seen_freq == 1235
        with pytest.raises(IndexError):
            freqs[2] = 1
        with pytest.raises(TypeError):
            v.config.scale = "x"
        with pytest.raises(ValueError, match=r"variable 'freqs_mhz'\[0\].*out of range"):
            freqs[0] = 1 << 32  # bare ctypes would store 0
        with pytest.raises(ValueError, match=r"variable 'config'.scale.*out of range"):
            v.config.scale = -1
        with pytest.raises(ValueError, match="3 elements do not fit 2"):
            v.freqs_mhz = (1, 2, 3)
        assert list(freqs) == [1234, 2] and v.config.copy().scale == 3
        v.freqs_mhz = (5, 6)  # whole-value assignment still works
        assert list(freqs) == [5, 6]
    # Views taken before close keep their memory valid; the objects are closed.
    assert list(freqs) == [5, 6]
