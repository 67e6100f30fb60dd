"""Loading skeletons: constants, live globals, verifier errors, integrity, fd hygiene."""

from __future__ import annotations

import gc
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from ebpf_gen.runtime import LoadError, ObjectFileError, ObjectSpec, RuntimeBPFError

pytestmark = pytest.mark.kernel

GLOBALS = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct cfg { __u32 mult; __u8 tag[4]; };

const volatile __u32 me = 0;
const volatile __u64 step = 1;
const volatile char label[8] = "default";
__u64 counter = 0;                       /* .bss */
__u64 knob = 11;                         /* .data */
__u64 knob_seen = 0;
struct cfg conf = { .mult = 2 };
__u64 custom SEC(".data.custom") = 5;
__u64 custom_seen = 0;
char label_seen[8];

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4);
         __type(key, __u32); __type(value, __u32); } small SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int count(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != me)
        return 0;
    counter += step * conf.mult;
    knob_seen = knob;
    custom_seen = custom;
    for (int i = 0; i < sizeof(label_seen); i++)
        label_seen[i] = label[i];  /* volatile reads: not folded to "default" */
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int spare(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
"""

REJECTED = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1);
         __type(key, __u32); __type(value, __u64); } arr SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int fine(void *ctx) { return 0; }

SEC("tracepoint/syscalls/sys_enter_getppid")
int unchecked(void *ctx)
{
    __u32 k = 0;
    __u64 *v = bpf_map_lookup_elem(&arr, &k);
    return *v;  /* no NULL check: the verifier must refuse */
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture
def mod(skeleton: Callable[[str, str], ModuleType]) -> ModuleType:
    return skeleton("rt_globals", GLOBALS)


def test_constants_change_program_behaviour(mod: ModuleType) -> None:
    with mod.load(constants={"me": os.getpid(), "step": 5, "label": b"custom"}) as o:
        o.programs.count.attach()
        os.getppid()
        os.getppid()
        v = o.variables
        assert v.counter == 2 * 5 * 2
        assert (v.me, v.step, v.label) == (os.getpid(), 5, b"custom")
        assert v.label_seen == b"custom"
        with pytest.raises(RuntimeBPFError, match="frozen after load"):
            v.step = 1


def test_globals_both_ways(mod: ModuleType) -> None:
    with mod.load(constants={"me": os.getpid()}) as o:
        o.programs.count.attach()
        v = o.variables
        assert (v.knob, v.custom, v.conf.mult) == (11, 5, 2)
        v.knob = 1234
        v.custom = 77
        conf = v.conf
        conf.mult = 10
        v.conf = conf
        os.getppid()
        assert (v.knob_seen, v.custom_seen) == (1234, 77)
        assert v.counter == 10  # step 1 * mult 10, written by the program
        v.counter = 0
        os.getppid()
        assert v.counter == 10


def test_bad_constants(mod: ModuleType) -> None:
    with pytest.raises(KeyError, match=r"no global variable 'nope'; known: .*counter.*me"):
        mod.load(constants={"nope": 1})
    with pytest.raises(TypeError, match=r"constant 'me' must be int"):
        mod.load(constants={"me": "1"})
    with pytest.raises(ValueError, match=r"constant 'me': 4294967296 out of range"):
        mod.load(constants={"me": 2**32})
    with pytest.raises(ValueError, match="do not fit"):
        mod.load(constants={"label": b"123456789"})


def test_max_entries_and_autoload(mod: ModuleType) -> None:
    with mod.load(max_entries={"small": 64}, autoload={"spare": False}) as o:
        assert o.maps.small.max_entries == 64
        for i in range(64):
            o.maps.small[i] = i
        assert o.programs.spare.fd < 0
        assert o.programs.count.fd >= 0
    with pytest.raises(KeyError, match="no map 'big'; known: small"):
        mod.load(max_entries={"big": 1})
    with pytest.raises(KeyError, match="no program 'x'; known: count, spare"):
        mod.load(autoload={"x": False})


def test_open_then_load(mod: ModuleType) -> None:
    opened = mod.OBJECT.open()
    opened.set_constants({"step": 3})
    with opened.load() as o:
        assert o.variables.step == 3
    with pytest.raises(RuntimeBPFError, match="already loaded"):
        opened.load()


def test_verifier_rejection_carries_log(skeleton: Callable[[str, str], ModuleType],
                                        caplog: pytest.LogCaptureFixture) -> None:
    bad = skeleton("rt_rejected", REJECTED)
    with pytest.raises(LoadError) as info:
        bad.load()
    err = info.value
    assert err.program == "unchecked"
    assert "map_value_or_null" in err.log, err.log
    assert "unchecked" in str(err) and "verifier" in str(err)
    # the same object loads once the offending program is left out
    with bad.load(autoload={"unchecked": False}) as o:
        assert o.programs.fine.fd >= 0


def test_libbpf_messages_reach_logging(mod: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ebpf_gen.libbpf"), mod.load():
        pass
    assert any("libbpf" in r.getMessage() for r in caplog.records if r.name == "ebpf_gen.libbpf")


def test_object_integrity(mod: ModuleType, tmp_path: Path) -> None:
    spec = mod.OBJECT
    filename = spec.file.filename
    shutil.copy(Path(mod.__file__).parent / filename, tmp_path / filename)
    with (tmp_path / filename).open("ab") as f:
        f.write(b"\0")
    tampered: ObjectSpec[mod.Objects] = ObjectSpec(
        name=spec.name, package=None, directory=tmp_path, files=spec.files, maps=spec.maps,
        programs=spec.programs, variables=spec.variables, objects=spec.objects,
    )
    with pytest.raises(ObjectFileError, match=r"sha256.*regenerat"):
        tampered.load()
    missing: ObjectSpec[mod.Objects] = ObjectSpec(
        name=spec.name, package=None, directory=tmp_path / "nowhere", files=spec.files,
        objects=spec.objects,
    )
    with pytest.raises(ObjectFileError, match="cannot read"):
        missing.load()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_load_close_cycles_do_not_leak_fds(mod: ModuleType) -> None:
    for _ in range(3):  # warm up: libbpf's feature probes, caches
        with mod.load() as o:
            o.programs.count.attach()
    # Earlier tests' unreachable objects may still hold fds: release them before the
    # baseline, or their collection during the loop reads as fds going missing.
    gc.collect()
    before = _open_fds()
    for i in range(1000):
        with mod.load(constants={"me": 1}) as o:
            if i % 20 == 0:  # detaching waits for an RCU grace period: not every time
                o.programs.count.attach()
            _ = o.variables.counter
    assert _open_fds() == before


def test_close_is_idempotent_and_runs_on_interrupt(mod: ModuleType) -> None:
    before = _open_fds()
    with pytest.raises(KeyboardInterrupt), mod.load() as o:
        link = o.programs.count.attach()
        raise KeyboardInterrupt
    assert o.closed and link.closed
    o.close()
    assert _open_fds() == before
    with pytest.raises(RuntimeBPFError, match="closed"):
        _ = o.variables.counter
