"""Programs and links: tail calls, attach failures that name their cause, uprobes, kprobes."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.runtime import AttachError

pytestmark = pytest.mark.kernel

TAIL = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_PROG_ARRAY); __uint(max_entries, 4);
         __type(key, __u32); __type(value, __u32); } jump SEC(".maps");

const volatile __u32 me = 0;
__u64 dispatched = 0, tailed = 0, fell_through = 0;

SEC("raw_tracepoint/sys_enter")
int dispatch(struct bpf_raw_tracepoint_args *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != me || ctx->args[1] != 110 /* getppid */)
        return 0;
    dispatched++;
    bpf_tail_call(ctx, &jump, 2);
    fell_through++;
    return 0;
}

SEC("raw_tracepoint/sys_enter")
int target(struct bpf_raw_tracepoint_args *ctx)
{
    tailed++;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

PROBES = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 me = 0;
__u64 hits = 0;

static int hit(void)
{
    if ((bpf_get_current_pid_tgid() >> 32) == me)
        __sync_fetch_and_add(&hits, 1);
    return 0;
}

SEC("kprobe/__x64_sys_getppid")
int on_kprobe(void *ctx) { return hit(); }

__u64 ret_hits = 0;

SEC("kprobe/no_such_function_for_ebpf_gen")
int on_missing_kprobe(void *ctx) { return 0; }

SEC("kretprobe/__x64_sys_getppid")
int on_kretprobe(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) == me)
        __sync_fetch_and_add(&ret_hits, 1);
    return 0;
}

SEC("tracepoint/nosuchcategory/nosuchevent")
int on_missing_tp(void *ctx) { return hit(); }

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_tp(void *ctx) { return hit(); }

SEC("uprobe")
int on_uprobe(void *ctx) { return hit(); }

char LICENSE[] SEC("license") = "GPL";
"""



@pytest.fixture
def probes(skeleton: Callable[[str, str], ModuleType]) -> Any:
    mod = skeleton("rt_probes", PROBES)
    with mod.load(constants={"me": os.getpid()}) as o:
        yield o


@pytest.mark.parametrize(
    "key_decl",
    ["__type(key, __u32)", "__uint(key_size, sizeof(__u32))"],
    ids=["btf-key", "key-size-only"],
)
def test_tail_call_through_prog_array(
    skeleton: Callable[[str, str], ModuleType], key_decl: str
) -> None:
    # libbpf-style sources often give a prog array only key_size: indexes stay ints.
    mod = skeleton(f"rt_tail_{len(key_decl)}", TAIL.replace("__type(key, __u32)", key_decl))
    with mod.load(constants={"me": os.getpid()}) as o:
        v = o.variables
        o.programs.dispatch.attach_raw_tracepoint("sys_enter")
        os.getppid()
        assert (v.dispatched, v.tailed, v.fell_through) == (1, 0, 1)
        o.maps.jump[2] = o.programs.target
        assert 2 in o.maps.jump and list(o.maps.jump) == [2]
        os.getppid()
        assert (v.dispatched, v.tailed, v.fell_through) == (2, 1, 1)
        del o.maps.jump[2]
        o.maps.jump[2] = o.programs.target.fd  # a bare fd works too
        del o.maps.jump[2]
        os.getppid()
        assert (v.dispatched, v.tailed, v.fell_through) == (3, 1, 2)
        with pytest.raises(TypeError, match="Program or a program fd"):
            o.maps.jump[1] = "target"


def test_attach_from_section_and_detach(probes: Any) -> None:
    with probes.programs.on_tp.attach() as link:
        os.getppid()
        assert probes.variables.hits == 1
        assert link in probes.links
    assert link.closed and link not in probes.links
    os.getppid()
    assert probes.variables.hits == 1


def test_close_detaches_links(skeleton: Callable[[str, str], ModuleType]) -> None:
    mod = skeleton("rt_probes", PROBES)
    o = mod.load(constants={"me": os.getpid()})
    link = o.programs.on_tp.attach()
    o.close()
    assert link.closed


def test_missing_tracepoint(probes: Any) -> None:
    with pytest.raises(AttachError, match=r"tracepoint syscalls/sys_enter_nonexistent does not "
                       r"exist on this kernel \(no /sys/kernel/tracing/events/syscalls/"):
        probes.programs.on_tp.attach_tracepoint("syscalls", "sys_enter_nonexistent")
    with pytest.raises(AttachError, match="nosuchcategory/nosuchevent does not exist"):
        probes.programs.on_missing_tp.attach()


def test_missing_raw_tracepoint(skeleton: Callable[[str, str], ModuleType]) -> None:
    mod = skeleton("rt_tail", TAIL)
    with mod.load() as o, pytest.raises(AttachError, match="raw tracepoint 'no_such_tp'"):
        o.programs.dispatch.attach_raw_tracepoint("no_such_tp")


@pytest.mark.nokprobe
def test_kprobe_unavailable_is_explained(probes: Any) -> None:
    with pytest.raises(AttachError, match="kprobes are unavailable on this kernel"):
        probes.programs.on_kprobe.attach_kprobe("__x64_sys_getppid")
    with pytest.raises(AttachError, match="kprobes are unavailable on this kernel"):
        probes.programs.on_kprobe.attach()


@pytest.mark.kprobe
def test_kprobe_attach(probes: Any) -> None:
    with probes.programs.on_kprobe.attach_kprobe("__x64_sys_getppid"):
        os.getppid()
    assert probes.variables.hits == 1
    with pytest.raises(AttachError, match="not found"):
        probes.programs.on_kprobe.attach_kprobe("no_such_function_for_ebpf_gen")
    with pytest.raises(AttachError, match=r"no traceable kernel function matches "
                       r"'no_such_function_for_ebpf_gen' \(a function must be in "
                       r"available_filter_functions"):
        probes.programs.on_missing_kprobe.attach()


@pytest.mark.kprobe
def test_kretprobe_attach(probes: Any) -> None:
    ret = probes.programs.on_kretprobe
    # From its section (kretprobe/__x64_sys_getppid), then by name with retprobe=True.
    with ret.attach() as link:
        os.getppid()
        assert link in probes.links
    assert link.closed
    assert probes.variables.ret_hits == 1
    with ret.attach_kprobe("__x64_sys_getppid", retprobe=True):
        os.getppid()
        os.getppid()
    os.getppid()  # detached: not counted
    assert probes.variables.ret_hits == 3
    assert probes.variables.hits == 0  # the entry probe was never attached
    with pytest.raises(AttachError, match="not found"):
        ret.attach_kprobe("no_such_function_for_ebpf_gen", retprobe=True)


def test_uprobe_on_libc(probes: Any) -> None:
    libc = ctypes.util.find_library("c")
    assert libc
    maps = Path("/proc/self/maps").read_text().splitlines()
    path = next(line.split()[-1] for line in maps if "libc.so" in line)
    getppid = ctypes.CDLL(libc).getppid
    with probes.programs.on_uprobe.attach_uprobe(path, "getppid", pid=os.getpid()):
        getppid()
        getppid()
    assert probes.variables.hits == 2
    with pytest.raises(AttachError, match="symbol 'no_such_symbol_x' not found"):
        probes.programs.on_uprobe.attach_uprobe(path, "no_such_symbol_x")
    with pytest.raises(AttachError, match="no such file"):
        probes.programs.on_uprobe.attach_uprobe("/nonexistent/bin", "main")
