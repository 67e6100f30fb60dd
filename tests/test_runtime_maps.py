"""Typed map handles against the real kernel: user-space access and values BPF wrote."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.runtime import (
    BPF_EXIST,
    BPF_NOEXIST,
    ArrayMap,
    HashMap,
    LibbpfError,
    MapOfMaps,
    libbpf,
)

pytestmark = pytest.mark.kernel

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct val { __u64 count; __u32 pid; char comm[16]; };
struct key2 { __u32 a; __u16 b; };

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096);
         __type(key, __u32); __type(value, struct val); } hmap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16);
         __type(key, struct key2); __type(value, char[8]); } smap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 8);
         __type(key, __u32); __type(value, __u64); } amap SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 4);
         __type(key, __u32); __type(value, __u64); } pcpu SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 16);
         __type(key, __u32); __type(value, __u32); } phash SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LRU_HASH); __uint(max_entries, 64);
         __type(key, __u64); __type(value, __s32); } lru SEC(".maps");

const volatile __u32 me = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (pid != me)
        return 0;
    __u32 zero = 0;
    __u64 *a = bpf_map_lookup_elem(&amap, &zero);
    if (a)
        __sync_fetch_and_add(a, 1);
    __u64 *p = bpf_map_lookup_elem(&pcpu, &zero);
    if (p)
        *p += 1;
    struct val v = {};
    struct val *old = bpf_map_lookup_elem(&hmap, &pid);
    if (old)
        v.count = old->count;
    v.count += 1;
    v.pid = pid;
    bpf_get_current_comm(v.comm, sizeof(v.comm));
    bpf_map_update_elem(&hmap, &pid, &v, BPF_ANY);
    __u64 lk = pid;
    __s32 lv = -1;
    bpf_map_update_elem(&lru, &lk, &lv, BPF_ANY);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def _loaded(skeleton: Callable[[str, str], ModuleType], stem: str, source: str) -> Any:
    """The skeleton of ``source``, loaded to count only this process's calls."""
    with skeleton(stem, source).load(constants={"me": os.getpid()}) as o:
        yield o


@pytest.fixture
def objs(skeleton: Callable[[str, str], ModuleType]) -> Any:
    yield from _loaded(skeleton, "rt_maps", SOURCE)


def test_hash_map_user_space(objs: Any) -> None:
    h = objs.maps.hmap
    Val = type(h.spec.value())
    assert len(h) == 0 and 1 not in h
    h[1] = Val(count=5, pid=1, comm=b"init")
    h.update(2, Val(count=6), BPF_NOEXIST)
    with pytest.raises(KeyError):
        h.update(2, Val(count=7), BPF_NOEXIST)
    with pytest.raises(KeyError):
        h.update(3, Val(count=7), BPF_EXIST)
    got = h[1]
    assert isinstance(got, Val) and got.count == 5 and got.comm == b"init"
    got.count = 99  # a copy: the map keeps 5
    assert h[1].count == 5
    assert sorted(h) == [1, 2] and len(h) == 2 and h.get(3) is None
    assert {k: v.count for k, v in h.items()} == {1: 5, 2: 6}
    del h[1]
    with pytest.raises(KeyError):
        del h[1]
    with pytest.raises(KeyError):
        h[1]
    h.clear()
    assert len(h) == 0


def test_wrong_key_type_names_map_and_type(objs: Any) -> None:
    with pytest.raises(TypeError, match=r"map 'hmap': key must be int"):
        objs.maps.hmap["1"]
    with pytest.raises(ValueError, match="out of range"):
        objs.maps.hmap[-1]
    with pytest.raises(TypeError, match=r"map 'hmap': value must be Val"):
        objs.maps.hmap[1] = 5


def test_struct_key_and_char_array_value(objs: Any) -> None:
    s = objs.maps.smap
    Key2 = s.spec.key
    s[Key2(a=1, b=2)] = b"abc"
    s[Key2(a=3, b=4)] = b"12345678"
    assert s[Key2(a=1, b=2)] == b"abc"
    assert {(k.a, k.b): v for k, v in s.items()} == {(1, 2): b"abc", (3, 4): b"12345678"}
    with pytest.raises(ValueError, match="do not fit"):
        s[Key2(a=1, b=2)] = b"123456789"


def test_array_and_percpu_user_space(objs: Any) -> None:
    a, p, ph = objs.maps.amap, objs.maps.pcpu, objs.maps.phash
    ncpu = libbpf.num_possible_cpus()
    assert len(a) == 8 and list(a) == list(range(8))
    a[3] = 2**64 - 1
    assert a[3] == 2**64 - 1 and dict(a.items())[3] == 2**64 - 1
    with pytest.raises(TypeError, match="cannot be deleted"):
        del a[3]
    a.clear()
    assert list(a.values()) == [0] * 8
    p[1] = list(range(10, 10 + ncpu))
    assert p[1] == list(range(10, 10 + ncpu))
    p[2] = 7  # one value for every CPU
    assert p[2] == [7] * ncpu
    with pytest.raises(ValueError, match="possible CPUs"):
        p[1] = [1] * (ncpu + 1)
    ph[5] = 3
    assert ph[5] == [3] * ncpu and dict(ph) == {5: [3] * ncpu}


def test_values_written_by_bpf(objs: Any) -> None:
    objs.programs.on_getppid.attach()
    for _ in range(5):
        os.getppid()
    me = os.getpid()
    v = objs.maps.hmap[me]
    assert (v.count, v.pid) == (5, me)
    assert v.comm  # the task's comm, as bytes
    assert objs.maps.amap[0] == 5
    assert sum(objs.maps.pcpu[0]) == 5
    assert objs.maps.lru[me] == -1


def test_iteration_while_entries_are_deleted(objs: Any) -> None:
    h = objs.maps.hmap
    Val = h.spec.value
    keys = set(range(1, 3001))
    for k in keys:
        h[k] = Val(count=k)
    doomed = sorted(k for k in keys if k % 2)
    kept = keys - set(doomed)
    stop = threading.Event()

    def deleter() -> None:
        for k in doomed:
            del h[k]
        stop.set()

    t = threading.Thread(target=deleter)
    t.start()
    seen: list[int] = []
    for k, v in h.items():
        assert v.count == k
        seen.append(k)
    t.join()
    assert len(seen) == len(set(seen)), "a key was yielded twice"
    assert set(seen) <= keys
    assert kept <= set(seen), "a key that was never deleted was skipped"
    assert sorted(h) == sorted(kept)


def test_closed_map_fails_cleanly(skeleton: Callable[[str, str], ModuleType]) -> None:
    mod = skeleton("rt_maps", SOURCE)
    with mod.load(constants={"me": os.getpid()}) as o:
        h = o.maps.hmap
    with pytest.raises(LibbpfError, match="EBADF"):
        h[1]


MAP_OF_MAPS = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct counts { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16);
                __type(key, __u32); __type(value, __u64); };
struct slots { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 4);
               __type(key, __u32); __type(value, __u16); };
struct { __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS); __uint(max_entries, 2);
         __type(key, __u32); __array(values, struct counts); } outer SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS); __uint(max_entries, 8);
         __type(key, __u32); __array(values, struct slots); } by_id SEC(".maps");

const volatile __u32 me = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int count(void *ctx)
{
    __u32 pid = bpf_get_current_pid_tgid() >> 32, zero = 0;
    if (pid != me)
        return 0;
    void *inner = bpf_map_lookup_elem(&outer, &zero);
    if (!inner)
        return 0;
    __u64 one = 1, *n = bpf_map_lookup_elem(inner, &pid);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        bpf_map_update_elem(inner, &pid, &one, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture
def nested(skeleton: Callable[[str, str], ModuleType]) -> Any:
    yield from _loaded(skeleton, "rt_map_of_maps", MAP_OF_MAPS)


def test_map_of_maps(nested: Any) -> None:
    outer, pid = nested.maps.outer, os.getpid()
    assert isinstance(outer, MapOfMaps) and len(outer) == 0 and list(outer) == []
    inner = outer.create_inner()
    assert isinstance(inner, HashMap) and inner.spec.name == "outer.inner"
    outer[0] = inner
    assert list(outer) == [0] and 0 in outer and 1 not in outer
    with nested.programs.count.attach():
        for _ in range(3):
            os.getppid()
    assert inner[pid] == 3  # the program found our map through the outer one
    seen = outer[0]  # opened by id: another handle, typed like the template
    assert isinstance(seen, HashMap) and seen.fd != inner.fd and seen[pid] == 3
    seen[pid] = 10
    assert inner[pid] == 10
    fd = seen.fd
    seen.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # the handle's own fd is closed, the map lives on in the outer map
    assert outer[0][pid] == 10
    del outer[0]
    assert len(outer) == 0 and 0 not in outer
    with pytest.raises(TypeError, match="map 'outer': value must be a map handle or a map fd"):
        outer[1] = "x"
    wrong = nested.maps.by_id.create_inner()  # an ARRAY: not the HASH the template says
    with pytest.raises(LibbpfError):
        outer[1] = wrong


def test_hash_of_maps_items(nested: Any) -> None:
    by_id = nested.maps.by_id
    a, b = by_id.create_inner(), by_id.create_inner()
    assert isinstance(a, ArrayMap) and a.max_entries == 4
    a[0], b[3] = 5, 6
    by_id[70], by_id[7] = a, b.fd  # a handle or a bare fd
    assert sorted(by_id) == [7, 70] and len(by_id) == 2
    assert {k: list(v.values()) for k, v in by_id.items()} == {70: [5, 0, 0, 0], 7: [0, 0, 0, 6]}
    by_id.clear()
    assert len(by_id) == 0
