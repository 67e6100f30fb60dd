"""Batch operations on hash-like and array maps against the real kernel.

Batch results are checked against key-by-key results of the same map; the per-key path is
exercised both when forced and where the kernel itself has no batch operation (LPM trie).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.runtime import BPF_NOEXIST, libbpf

pytestmark = pytest.mark.kernel

N = 100_000

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct val { __u64 count; __u32 pid; char comm[12]; };
struct lpm_key { __u32 prefixlen; __u8 addr[4]; };

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 100000);
         __type(key, __u32); __type(value, __u64); } big SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 512);
         __type(key, __u64); __type(value, struct val); } structs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 300);
         __type(key, __u32); __type(value, __u32); } arr SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 64);
         __type(key, __u32); __type(value, __u32); } phash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 5);
         __type(key, __u32); __type(value, __u64); } parr SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 128);
         __type(key, __u32); __type(value, __s16); } lru SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_STACK_TRACE); __uint(max_entries, 16);
         __uint(key_size, 4); __uint(value_size, 127 * 8); } stacks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 16);
         __uint(map_flags, BPF_F_NO_PREALLOC);
         __type(key, struct lpm_key); __type(value, __u32); } trie SEC(".maps");

const volatile __u32 me = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int touch(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) == me)
        bpf_get_stackid(ctx, &stacks, 0);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def module(skeleton: Callable[[str, str], ModuleType]) -> ModuleType:
    return skeleton("rt_batch", SOURCE)


@pytest.fixture
def objs(module: ModuleType) -> Any:
    with module.load(constants={"me": os.getpid()}) as o:
        yield o


def per_key(m: Any) -> list[tuple[Any, Any]]:
    saved, m.iteration = m.iteration, "per-key"
    try:
        return list(m.items())
    finally:
        m.iteration = saved


def test_batch_equals_per_key_on_100k_entries(objs: Any) -> None:
    big = objs.maps.big
    assert big.iteration == "batch"
    want = {k: k * 3 + (1 << 40) for k in range(N)}
    big.update_batch(want)
    assert big.iteration == "batch"
    got = dict(big.lookup_batch())
    assert got == want
    assert dict(big.items()) == want and sorted(big) == list(range(N))
    assert sorted(big.values()) == sorted(want.values())
    assert dict(per_key(big)) == want
    big.delete_batch(range(0, N, 2))
    assert dict(big.lookup_batch()) == {k: v for k, v in want.items() if k % 2}
    drained = dict(big.lookup_and_delete_batch())
    assert drained == {k: v for k, v in want.items() if k % 2}
    assert len(big) == 0 and big.lookup_batch() == []


def test_batch_struct_values_and_pairs(objs: Any) -> None:
    m = objs.maps.structs
    Val = m.spec.value
    m.update_batch([(k, Val(count=k, pid=k + 1, comm=b"c%d" % k)) for k in range(300)])
    got = dict(m.lookup_batch())
    assert sorted(got) == list(range(300))
    assert all(v.count == k and v.pid == k + 1 and v.comm == b"c%d" % k for k, v in got.items())
    assert {k: bytes(v) for k, v in per_key(m)} == {k: bytes(v) for k, v in got.items()}
    with pytest.raises(KeyError, match="already exists"):
        m.update_batch([(5, Val())], BPF_NOEXIST)


def test_batch_arrays_and_percpu(objs: Any) -> None:
    arr = objs.maps.arr
    arr.update_batch((i, i * i) for i in range(300))
    assert dict(arr.lookup_batch()) == {i: i * i for i in range(300)} == dict(per_key(arr))
    with pytest.raises(TypeError, match="cannot be deleted"):
        arr.delete_batch([1])
    with pytest.raises(KeyError, match="out of range"):
        arr.update_batch([(300, 1)])
    ncpus = libbpf.num_possible_cpus()
    ph = objs.maps.phash
    ph.update_batch({1: 7, 2: list(range(ncpus))})
    assert dict(ph.lookup_batch()) == {1: [7] * ncpus, 2: list(range(ncpus))}
    assert dict(per_key(ph)) == dict(ph.lookup_batch())
    pa = objs.maps.parr
    pa.update_batch({i: [i + c for c in range(ncpus)] for i in range(5)})
    assert dict(pa.lookup_batch()) == {i: [i + c for c in range(ncpus)] for i in range(5)}
    assert per_key(pa) == pa.lookup_batch()
    lru = objs.maps.lru
    lru.update_batch({i: -i for i in range(100)})
    assert dict(lru.lookup_batch()) == {i: -i for i in range(100)} == dict(per_key(lru))


def test_lpm_trie_batch_equals_per_key(objs: Any) -> None:
    trie = objs.maps.trie
    Key = trie.spec.key
    k1, k2 = Key(prefixlen=24, addr=(10, 0, 0, 0)), Key(prefixlen=8, addr=(192, 0, 0, 0))
    trie.update_batch([(k1, 1), (k2, 2)])
    got = {(k.prefixlen, tuple(k.addr)): v for k, v in trie.items()}
    assert got == {(24, (10, 0, 0, 0)): 1, (8, (192, 0, 0, 0)): 2}
    assert {bytes(k): v for k, v in per_key(trie)} == {
        bytes(k): v for k, v in trie.lookup_batch()}


def test_kernel_without_batch_falls_back_per_key(objs: Any) -> None:
    # STACK_TRACE maps have no batch operations in any kernel: the first items() is refused
    # (ENOTSUPP), the handle says so and walks key by key from then on.
    stacks = objs.maps.stacks
    assert stacks.iteration == "batch"
    with objs.programs.touch.attach():
        for _ in range(3):
            os.getppid()
    got = dict(stacks.items())
    assert stacks.iteration == "per-key"
    assert got and all(isinstance(v, tuple) and v for v in got.values())
    assert got == {k: stacks[k] for k in got} == dict(stacks.lookup_batch())


def test_batch_range_and_type_errors(objs: Any) -> None:
    big = objs.maps.big
    with pytest.raises(ValueError, match=r"map 'big': key: -1 out of range"):
        big.update_batch({-1: 0})
    with pytest.raises(ValueError, match=r"map 'big': value: 18446744073709551616 out of range"):
        big.update_batch({1: 1 << 64})
    with pytest.raises(TypeError, match=r"map 'big': key must be int"):
        big.update_batch({"1": 0})
    with pytest.raises(TypeError, match=r"mapping or \(key, value\) pairs"):
        big.update_batch([1, 2])
    with pytest.raises(ValueError, match="flags"):
        big.update_batch({1: 1}, flags=7)
    assert big.lookup_batch() == []  # nothing half-written
    big[3] = 4
    with pytest.raises(KeyError):
        big.delete_batch([3, 5])
    assert 3 not in big
