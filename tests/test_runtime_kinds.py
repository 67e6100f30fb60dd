"""Typed handles of the map kinds that are not key -> value dicts, on the real kernel:
stack traces (symbolized), queue/stack, bloom filter, LPM trie keys, task storage."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.runtime import (
    BloomFilter,
    BuildIdFrame,
    LoadError,
    LocalStorage,
    LpmTrieMap,
    Queue,
    Stack,
    StackTraceMap,
    symbols,
)

from tests.conftest import require_tool
from tests.vm.kernel_features import vm_kernel

pytestmark = pytest.mark.kernel

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct lpm_key { __u32 prefixlen; __u8 addr[4]; };

struct { __uint(type, BPF_MAP_TYPE_STACK_TRACE); __uint(max_entries, 256);
         __uint(key_size, sizeof(__u32)); __uint(value_size, 127 * sizeof(__u64));
       } stacks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_STACK_TRACE); __uint(max_entries, 64);
         __uint(map_flags, BPF_F_STACK_BUILD_ID);
         __uint(key_size, sizeof(__u32)); __uint(value_size, 127 * 32); } bstacks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4);
         __type(key, __u32); __type(value, __s64); } ids SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_QUEUE); __uint(max_entries, 4);
         __type(value, __u64); } fifo SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_STACK); __uint(max_entries, 4);
         __type(value, __u32); } lifo SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 16);
         __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, struct lpm_key); __type(value, __u32); } routes SEC(".maps");

const volatile __u32 me = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != me)
        return 0;
    __u32 k = 0;
    __s64 id = bpf_get_stackid(ctx, &stacks, 0);
    bpf_map_update_elem(&ids, &k, &id, BPF_ANY);
    __u64 v = 42;
    bpf_map_push_elem(&fifo, &v, 0);
    return 0;
}

SEC("uprobe")
int on_target(struct pt_regs *ctx)
{
    __u32 k = 1;
    __s64 id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
    bpf_map_update_elem(&ids, &k, &id, BPF_ANY);
    k = 2;
    id = bpf_get_stackid(ctx, &bstacks, BPF_F_USER_STACK);
    bpf_map_update_elem(&ids, &k, &id, BPF_ANY);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

# Newer kinds, in their own object: bloom filters came in 5.16, task storage and
# bpf_get_current_task_btf in 5.11, so on the VM tier's 5.10 this object must fail to load.
NEW_SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_BLOOM_FILTER); __uint(max_entries, 128);
         __uint(map_extra, 3); __type(value, __u32); } seen SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_TASK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, int); __type(value, __u64); } tstore SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_SK_STORAGE); __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, int); __type(value, __u32); } skstore SEC(".maps");

const volatile __u32 me = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != me)
        return 0;
    __u32 b = 7;
    bpf_map_push_elem(&seen, &b, 0);
    return 0;
}

SEC("tp_btf/sys_enter")
int on_sys_enter(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != me)
        return 0;
    __u64 *slot = bpf_task_storage_get(&tstore, bpf_get_current_task_btf(), 0,
                                       BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (slot)
        *slot += 1;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

TARGET_C = r"""
#include <unistd.h>
__attribute__((noinline)) int target_fn(int x)
{
    char c;
    write(1, "in\n", 3);
    return read(0, &c, 1) + x;
}
int main(void) { return target_fn(1) == 2 ? 0 : 1; }
"""


@pytest.fixture(scope="module")
def module(skeleton: Callable[[str, str], ModuleType]) -> ModuleType:
    return skeleton("rt_kinds", SOURCE)


@pytest.fixture
def objs(module: ModuleType) -> Any:
    with module.load(constants={"me": os.getpid()}) as o:
        yield o


@pytest.fixture
def new_objs(skeleton: Callable[[str, str], ModuleType]) -> Any:
    mod = skeleton("rt_kinds_new", NEW_SOURCE)
    if vm_kernel() == "5.10":  # no bloom filters (5.16), no task storage (5.11)
        with pytest.raises(LoadError):
            mod.load(constants={"me": os.getpid()})
        yield None  # the refusal was the expected outcome; the tests stop there
        return
    with mod.load(constants={"me": os.getpid()}) as o:
        yield o


def test_generator_types_the_kinds(objs: Any, new_objs: Any) -> None:
    m = objs.maps
    assert type(m.stacks) is StackTraceMap and type(m.fifo) is Queue
    assert type(m.lifo) is Stack and type(m.routes) is LpmTrieMap
    hints = type(m).__annotations__
    assert hints["fifo"] == "Queue[int]" and hints["routes"] == "LpmTrieMap[LpmKey, int]"
    assert hints["stacks"] == "StackTraceMap"
    if new_objs is None:  # refused on 5.10, as expected (see new_objs)
        return
    assert type(new_objs.maps.seen) is BloomFilter and type(new_objs.maps.tstore) is LocalStorage
    new_hints = type(new_objs.maps).__annotations__
    assert new_hints["tstore"] == "LocalStorage[int]" and new_hints["seen"] == "BloomFilter[int]"


def test_kernel_stack_symbolized(objs: Any) -> None:
    with objs.programs.on_getppid.attach():
        os.getppid()
    stack_id = objs.maps.ids[0]
    assert stack_id >= 0, f"bpf_get_stackid failed: {stack_id}"
    addrs = objs.maps.stacks[stack_id]
    assert isinstance(addrs, tuple) and addrs and all(a >= 1 << 63 for a in addrs)
    assert 0 not in addrs  # the zero padding is trimmed
    names = [s.name for s in symbols.symbolize(addrs)]
    assert any(n and ("do_syscall_64" in n or "entry_SYSCALL" in n) for n in names), names
    assert stack_id in set(objs.maps.stacks)
    with pytest.raises(KeyError, match=r"stack id -14 is bpf_get_stackid\(\)'s error 14"):
        objs.maps.stacks[-14]
    with pytest.raises(TypeError, match="written by bpf_get_stackid"):
        objs.maps.stacks[1] = (1, 2)
    assert objs.maps.fifo.pop() == 42  # the program's push


def test_user_stack_symbolized_by_elf_tables(objs: Any, tmp_path: Path) -> None:
    src, binary = tmp_path / "target.c", tmp_path / "target"
    src.write_text(TARGET_C)
    gcc = require_tool("gcc")
    subprocess.run([gcc, "-O0", "-fno-omit-frame-pointer", "-o", str(binary), str(src)],
                   check=True)
    with objs.programs.on_target.attach_uprobe(binary, "target_fn"):
        proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"in\n"
            user = symbols.UserSymbols(proc.pid)  # while the process lives
        finally:
            proc.communicate(b"x", timeout=10)
    assert proc.returncode == 0
    addrs = objs.maps.stacks[objs.maps.ids[1]]
    frames = [user(a) for a in addrs]
    assert frames[0].name == "target_fn" and frames[0].offset == 0, frames
    assert frames[0].module == "target"
    callers = [f.name for f in frames[1:]]
    if vm_kernel() == "5.10":
        # At a uprobe on a function's first instruction the frame pointer is not set up
        # yet: 5.10 walks from the caller's frame and skips main itself (later kernels
        # take the return address from the stack pointer there).
        assert callers and "target_fn" not in callers, frames
    else:
        assert "main" in callers, frames
    # The build-id stack of the same call names the binary by its GNU build id.
    bframes = objs.maps.bstacks[objs.maps.ids[2]]
    build_id = symbols.ElfSymbols(str(binary)).build_id
    assert build_id and isinstance(bframes[0], BuildIdFrame)
    assert bframes[0].build_id == build_id
    elf = symbols.ElfSymbols(str(binary))
    vaddr = elf.vaddr(bframes[0].offset)
    assert vaddr is not None and elf.find(vaddr) == ("target_fn", 0)


def test_queue_and_stack_from_user_space(objs: Any) -> None:
    q, s = objs.maps.fifo, objs.maps.lifo
    for v in (1, 2, 3, 4):
        q.push(v)
        s.push(v)
    with pytest.raises(OverflowError, match="full"):
        q.push(5)
    q.push(5, overwrite=True)  # drops the oldest (1)
    assert q.peek() == 2 and list(q.drain()) == [2, 3, 4, 5]
    assert s.pop() == 4 and s.peek() == 3 and list(s.drain()) == [3, 2, 1]
    with pytest.raises(IndexError, match="pop from empty queue 'fifo'"):
        q.pop()
    with pytest.raises(IndexError, match="peek from empty stack"):
        s.peek()
    with pytest.raises(TypeError, match=r"has no keys: use push\(value\)"):
        q[0]
    with pytest.raises(TypeError, match="has no keys"):
        list(q)
    with pytest.raises(ValueError, match="out of range"):
        s.push(1 << 32)
    with pytest.raises(TypeError, match="must be int"):
        q.push("x")


def test_bloom_filter(new_objs: Any) -> None:
    if new_objs is None:  # refused on 5.10, as expected (see new_objs)
        return
    bf = new_objs.maps.seen
    with new_objs.programs.on_getppid.attach():
        os.getppid()
    assert 7 in bf  # added by the program
    assert 12345 not in bf
    bf.add(12345)
    assert 12345 in bf
    with pytest.raises(ValueError, match="out of range"):
        bf.add(-1)


def test_lpm_trie_key_helper_longest_prefix(objs: Any) -> None:
    r = objs.maps.routes
    r[r.key("10.0.0.0/8")] = 8
    r[r.key(16, b"\x0a\x01")] = 16
    assert r[r.key("10.1.2.3/32")] == 16
    assert r[r.key("10.2.0.1/32")] == 8
    assert r[r.key(32, 0x0A020001)] == 8
    with pytest.raises(KeyError):
        r[r.key("11.0.0.1/32")]
    with pytest.raises(ValueError, match="prefix length 33 out of range"):
        r.key(33, b"")
    with pytest.raises(ValueError, match="5 data bytes do not fit 4"):
        r.key(8, b"12345")
    with pytest.raises(ValueError, match="does not appear to be"):
        r.key("nonsense")


def test_task_storage_by_pidfd(new_objs: Any) -> None:
    if new_objs is None:  # refused on 5.10, as expected (see new_objs)
        return
    objs = new_objs
    if True:
        t = objs.maps.tstore
        with t.for_pid(os.getpid()) as me:
            with objs.programs.on_sys_enter.attach():
                os.getppid()
            assert t[me] >= 1  # written by BPF for this task
            t[me] = 1000
            assert t[me] == 1000
            del t[me]
            with pytest.raises(KeyError):
                t[me]
        with pytest.raises(TypeError, match="key must be an fd"):
            t["x"]
        r, w = os.pipe()
        try:
            with pytest.raises(ValueError, match="not the kind of object"):
                t[r]
        finally:
            os.close(r)
            os.close(w)
        with pytest.raises(TypeError, match="cannot be iterated"):
            list(t)


def test_socket_storage_by_socket(new_objs: Any) -> None:
    if new_objs is None:  # refused on 5.10, as expected (see new_objs)
        return
    sk = new_objs.maps.skstore
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(KeyError):
            sk[s]
        sk[s] = 99
        assert sk[s] == 99 and sk[s.fileno()] == 99
        with pytest.raises(ValueError, match="out of range"):
            sk[s] = -1
