"""PerfEventArray and RingBuf against the real kernel: a tracepoint program on getppid()
sends one event per call; the tests count, order and decode what comes back.

The BPF C source below is compiled by clang and turned into a skeleton by the ebpf-gen CLI
(the path an application takes), then loaded through the runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ebpf_gen.runtime import PerfEventArray, RingBuf, events

from .conftest import require_tool
from .vm.kernel_features import lacks

pytestmark = pytest.mark.kernel

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u32 pid;
	__u32 seq;
	__u64 value;
	char tag[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} ring_events SEC(".maps");

const volatile __u32 target_pid = 0;
__u32 seq;
__u64 ring_fail;

static __always_inline int mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_pid;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int perf_out(void *ctx)
{
	if (!mine())
		return 0;
	struct event e = {.pid = target_pid, .seq = seq++, .value = 7, .tag = "perf"};
	bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int perf_short(void *ctx)
{
	if (!mine())
		return 0;
	struct event e = {.pid = target_pid, .seq = seq++, .value = 5, .tag = "short"};
	// 12 bytes (pid, seq, low half of value) + 4 of raw size: 8-byte aligned, so no
	// kernel padding; the reader zero-pads to 24
	bpf_perf_event_output(ctx, &perf_events, BPF_F_CURRENT_CPU, &e, 12);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int ring_out(void *ctx)
{
	if (!mine())
		return 0;
	struct event e = {.pid = target_pid, .seq = seq++, .value = 8, .tag = "ring"};
	if (bpf_ringbuf_output(&ring_events, &e, sizeof(e), 0))
		ring_fail++;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int ring_reserve(void *ctx)
{
	if (!mine())
		return 0;
	struct event *e = bpf_ringbuf_reserve(&ring_events, sizeof(*e), 0);
	if (!e) {
		ring_fail++;
		return 0;
	}
	e->pid = target_pid;
	e->seq = seq++;
	e->value = 9;
	__builtin_memcpy(e->tag, "reserve", 8);
	/* odd sequence numbers are discarded: the reader must skip them */
	if (e->seq & 1)
		bpf_ringbuf_discard(e, 0);
	else
		bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def skel(skeleton: Callable[[str, str], ModuleType]) -> ModuleType:
    # Through the session's skeleton builder: the VM tier's guests load the host's build
    # (tests/conftest.py) instead of compiling for a minute under emulation.
    require_tool("clang")
    return skeleton("evtest_skel", SOURCE)


@contextlib.contextmanager
def pinned() -> Iterator[int]:
    """Stay on one CPU: per-CPU perf rings keep their order, lost records flush there."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


@pytest.fixture(params=["mmap", "libbpf"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both readers, whatever this CPU would pick: ours (mmap, batched; x86) and libbpf's
    (the weakly ordered CPUs')."""
    monkeypatch.setenv("EBPF_GEN_EVENT_READER", request.param)
    return str(request.param)


@pytest.fixture
def objs(skel: ModuleType, reader: str) -> Iterator[Any]:
    """The object with both readers open (a perf map takes events only while one is)."""
    with skel.load(constants={"target_pid": os.getpid()}) as loaded:
        loaded.maps.perf_events.reader()
        loaded.maps.ring_events.reader()
        yield loaded


def trigger(n: int) -> None:
    for _ in range(n):
        os.getppid()


def collect(m: Any, n: int, timeout: float = 5.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got.extend(m.poll(0.2))
    got.extend(m.poll(0.05))  # anything beyond n is a bug the caller's assert shows
    return got


def assert_split(a: list[int], b: list[int], n: int) -> None:
    """Two programs on one tracepoint share ``seq``: each saw every other number, in order."""
    assert len(a) == len(b) == n // 2
    assert a == sorted(a) and b == sorted(b)
    assert sorted(a + b) == list(range(n))
    assert {x % 2 for x in a} != {x % 2 for x in b}


def test_handles_are_typed(objs: Any, skel: ModuleType) -> None:
    assert isinstance(objs.maps.perf_events, PerfEventArray)
    assert isinstance(objs.maps.ring_events, RingBuf)
    assert objs.maps.perf_events.spec.event is skel.Event


def test_reader_choice(objs: Any, reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    got = {type(objs.maps.perf_events._reader).__name__,
           type(objs.maps.ring_events._reader).__name__}
    assert got == ({"_PerfReader", "_RingBufReader"} if reader == "mmap"
                   else {"_LibbpfPerfReader", "_LibbpfRingReader"})
    monkeypatch.delenv("EBPF_GEN_EVENT_READER")
    tso = os.uname().machine in ("x86_64", "i386", "i686")
    assert events.reader_kind() == ("mmap" if tso else "libbpf")
    monkeypatch.setenv("EBPF_GEN_EVENT_READER", "fast")
    with pytest.raises(ValueError, match="EBPF_GEN_EVENT_READER='fast': want one of mmap"):
        events.reader_kind()


def test_perf_events_in_order_with_values(objs: Any, skel: ModuleType) -> None:
    objs.programs.perf_out.attach()
    n = 1000
    with pinned():
        trigger(n)
    got = collect(objs.maps.perf_events, n)
    assert len(got) == n
    assert all(isinstance(e, skel.Event) for e in got)
    assert [e.seq for e in got] == list(range(n))
    assert {(e.pid, e.value, e.tag) for e in got} == {(os.getpid(), 7, b"perf")}
    assert objs.maps.perf_events.lost == 0


def test_events_are_copies(objs: Any) -> None:
    objs.programs.perf_out.attach()
    objs.programs.ring_out.attach()
    with pinned():
        trigger(3)
    first = collect(objs.maps.perf_events, 3) + collect(objs.maps.ring_events, 3)
    # Reuse the ring space many times over; the events we hold must not change.
    with pinned():
        for _ in range(5):
            trigger(2000)
            objs.maps.perf_events.poll(0.1)
            objs.maps.ring_events.poll(0.1)
    assert_split([e.seq for e in first[:3]], [e.seq for e in first[3:]], 6)
    assert [e.tag for e in first] == [b"perf"] * 3 + [b"ring"] * 3


def test_poll_timeout_returns_empty_in_time(objs: Any) -> None:
    for m in (objs.maps.perf_events, objs.maps.ring_events):
        start = time.monotonic()
        assert m.poll(0.3) == []
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 0.6, elapsed


@pytest.mark.parametrize("wakeup_bytes", [None, 0])
def test_poll_wakes_for_one_event(objs: Any, wakeup_bytes: int | None) -> None:
    objs.maps.perf_events.resize(pages=8, wakeup_bytes=wakeup_bytes)
    for prog, m in ((objs.programs.perf_out, objs.maps.perf_events),
                    (objs.programs.ring_out, objs.maps.ring_events)):
        with prog.attach():
            timer = threading.Timer(0.2, trigger, (1,))
            start = time.monotonic()
            timer.start()
            got = m.poll(5.0)
            elapsed = time.monotonic() - start
            timer.join()
        assert len(got) == 1
        assert 0.15 < elapsed < 1.0, elapsed


def test_perf_wakeup_every_event(objs: Any) -> None:
    perf = objs.maps.perf_events
    perf.resize(pages=8, wakeup_bytes=0)
    objs.programs.perf_out.attach()
    with pinned():
        trigger(10)
    assert [e.seq for e in collect(perf, 10)] == list(range(10))


def test_ring_events_in_order_with_values(objs: Any, skel: ModuleType) -> None:
    objs.programs.ring_out.attach()
    n = 1000
    trigger(n)
    got = collect(objs.maps.ring_events, n)
    assert len(got) == n
    assert [e.seq for e in got] == list(range(n))
    assert {(e.pid, e.value, e.tag) for e in got} == {(os.getpid(), 8, b"ring")}
    assert objs.variables.ring_fail == 0


def test_ring_reserve_submit_skips_discarded(objs: Any) -> None:
    objs.programs.ring_reserve.attach()
    n = 200
    trigger(n)
    got = collect(objs.maps.ring_events, n // 2)
    assert [e.seq for e in got] == list(range(0, n, 2))
    assert {(e.value, e.tag) for e in got} == {(9, b"reserve")}


def test_events_iterator(objs: Any) -> None:
    objs.programs.ring_out.attach()
    objs.programs.perf_out.attach()
    with pinned():
        trigger(50)
    ring = [e.seq for e in objs.maps.ring_events.events(timeout=0.5)]
    perf = [e.seq for e in objs.maps.perf_events.events(timeout=0.5)]
    assert_split(ring, perf, 100)


def test_async_for(objs: Any) -> None:
    objs.programs.ring_out.attach()
    objs.programs.perf_out.attach()

    async def read(m: Any, n: int) -> list[int]:
        out: list[int] = []
        async for ev in m:
            out.append(ev.seq)
            if len(out) == n:
                break
        return out

    async def main() -> tuple[list[int], list[int]]:
        readers = asyncio.gather(
            read(objs.maps.ring_events, 20), read(objs.maps.perf_events, 20)
        )
        await asyncio.sleep(0.05)  # both readers wait on the loop before the events exist
        with pinned():
            trigger(20)
        return await asyncio.wait_for(readers, 5.0)

    ring, perf = asyncio.run(main())
    assert_split(ring, perf, 40)


def test_perf_lost_counted(objs: Any) -> None:
    perf = objs.maps.perf_events
    perf.resize(pages=1)  # 4 KiB: about 100 events of 40 bytes
    objs.programs.perf_out.attach()
    burst = 5000
    with pinned():
        trigger(burst)
        received = len(perf.poll(0.1))
        # The kernel writes the LOST record with the next sample that fits.
        trigger(1)
        received += len(collect(perf, 1, timeout=1.0))
    assert perf.lost > 0
    assert received + perf.lost == burst + 1


def test_short_perf_record_is_zero_padded(objs: Any) -> None:
    objs.programs.perf_short.attach()
    with pinned():
        trigger(2)
    got = collect(objs.maps.perf_events, 2)
    assert [(e.pid, e.seq, e.value, e.tag) for e in got] == [
        (os.getpid(), 0, 5, b""), (os.getpid(), 1, 5, b""),
    ]
    assert objs.maps.perf_events.short == 2


def test_closing_the_object_closes_buffers(skel: ModuleType) -> None:
    objs = skel.load(constants={"target_pid": os.getpid()})
    perf, ring = objs.maps.perf_events, objs.maps.ring_events
    objs.close()
    for m in (perf, ring):
        with pytest.raises(ValueError, match="closed"):
            m.poll(0)


def _bpftool_ids(what: str) -> set[int]:
    out = subprocess.run(["bpftool", "-j", what, "show"], capture_output=True, text=True,
                         check=True).stdout
    return {int(item["id"]) for item in json.loads(out or "[]")}


def _perf_attachment_pids() -> list[int]:
    out = subprocess.run(["bpftool", "-j", "perf", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [int(item["pid"]) for item in json.loads(out or "[]")]


CHILD = r"""
import ctypes, json, os, sys
sys.path.insert(0, sys.argv[1])
import evtest_skel
from ebpf_gen.runtime import libbpf

def obj_id(fd):
    info = (ctypes.c_uint32 * 32)()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    assert libbpf.lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(n)) == 0
    return info[1]  # bpf_prog_info.id and bpf_link_info.id both follow a u32 type

def link_id(link):
    # Without perf links (before 5.15) a tracepoint attachment is a perf event fd: no id.
    info = (ctypes.c_uint32 * 32)()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    ok = libbpf.lib().bpf_obj_get_info_by_fd(link.fd, ctypes.byref(info), ctypes.byref(n)) == 0
    return info[1] if ok else None

objs = evtest_skel.load(constants={"target_pid": os.getpid()})
links = [objs.programs.perf_out.attach(), objs.programs.ring_out.attach()]
print(json.dumps({
    "progs": [obj_id(objs.programs.perf_out.fd), obj_id(objs.programs.ring_out.fd)],
    "links": [link_id(link) for link in links],
}), flush=True)
for ev in objs.maps.perf_events.events():
    pass
"""


def test_ctrl_c_in_events_leaves_nothing_attached(skel: ModuleType) -> None:
    require_tool("bpftool")
    skel_dir = str(Path(skel.__file__ or "").parent)
    child = subprocess.Popen([sys.executable, "-c", CHILD, skel_dir], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        ids = json.loads(line)
        if lacks("perf_link"):
            # Attached by the perf ioctl: bpftool shows the child's perf events, not links.
            assert ids["links"] == [None, None]
            assert _perf_attachment_pids().count(child.pid) == 2
        else:
            assert set(ids["links"]) <= _bpftool_ids("link")
        assert set(ids["progs"]) <= _bpftool_ids("prog")
        time.sleep(0.2)  # let it block in events()
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode != 0
    assert "KeyboardInterrupt" in err
    assert not (set(ids["links"]) - {None}) & _bpftool_ids("link")
    assert not set(ids["progs"]) & _bpftool_ids("prog")


def test_event_type_layout_matches_the_struct(skel: ModuleType) -> None:
    assert ctypes.sizeof(skel.Event) == 24
    assert textwrap.dedent(skel.Event.__doc__ or "").startswith("struct event")


def test_readers_open_on_request(skel: ModuleType, reader: str) -> None:
    with skel.load(constants={"target_pid": os.getpid()}) as objs:
        perf, ring = objs.maps.perf_events, objs.maps.ring_events
        assert perf._reader is None and ring._reader is None  # nothing opened at load
        for m in (perf, ring):
            assert not isinstance(m, Mapping)
            assert not hasattr(m, "clear") and not hasattr(m, "__getitem__")
        assert ring.poll(0) == []  # the first use opens the ring's reader, not the perf one
        assert ring._reader is not None and perf._reader is None
        with pytest.raises(ValueError, match="already has a reader open"):
            ring.reader()
        ring._reader.close()
        with ring.reader() as r:  # an explicit reader, closed by `with`
            objs.programs.ring_out.attach()
            trigger(10)
            assert [e.seq for e in collect(r, 10)] == list(range(10))
        assert ring._reader is None
        assert [e.seq for e in (trigger(3), collect(ring, 3))[1]] == [10, 11, 12]


def test_two_threads_share_a_reader_without_duplicates(objs: Any) -> None:
    """Without the reader's lock, two threads in libbpf's consume (which drops the GIL)
    delivered the same records twice (issue 8: 1,186 to 9,800 of 20,000)."""
    objs.programs.ring_out.attach()
    ring = objs.maps.ring_events
    n = 20000
    got: list[list[int]] = [[], []]
    stop = threading.Event()

    def consume(out: list[int]) -> None:
        while not stop.is_set():
            out.extend(e.seq for e in ring.poll(0.05))

    threads = [threading.Thread(target=consume, args=(out,)) for out in got]
    for t in threads:
        t.start()
    try:
        for _ in range(n // 100):
            trigger(100)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    seqs = got[0] + got[1]
    assert len(seqs) == len(set(seqs))  # every event once
    assert len(seqs) + objs.variables.ring_fail == n


def test_failed_resize_leaves_a_working_reader(objs: Any) -> None:
    perf = objs.maps.perf_events
    objs.programs.perf_out.attach()
    for bad in ({"pages": 3}, {"pages": 0}, {"pages": 8, "wakeup_bytes": -1},
                {"pages": 8, "wakeup_bytes": 2**32}, {"pages": 1 << 40}):
        with pytest.raises(ValueError, match="perf map 'perf_events'"):
            perf.resize(**bad)
    with pinned():
        trigger(5)
    assert [e.seq for e in collect(perf, 5)] == list(range(5))


def _fields(e: Any) -> tuple[Any, ...]:
    return (int(e["pid"]), int(e["seq"]), int(e["value"]), bytes(e["tag"]))


@pytest.mark.parametrize("kind", ["perf", "ring"])
def test_arrays_equal_the_event_objects(objs: Any, skel: ModuleType, kind: str) -> None:
    """The same workload read twice from seq 0, as objects and as arrays; small perf rings
    (8 KiB: records wrap around the ring's end) and a ring buffer reused many times."""
    np = pytest.importorskip("numpy")
    m = objs.maps.perf_events if kind == "perf" else objs.maps.ring_events
    if kind == "perf":
        m.resize(pages=2)
    (objs.programs.perf_out if kind == "perf" else objs.programs.ring_out).attach()
    runs: list[list[tuple[Any, ...]]] = []
    for as_array in (False, True):
        objs.variables.seq = 0
        got: list[tuple[Any, ...]] = []
        for i in range(1, 31):
            with pinned():
                trigger(100)
            deadline = time.monotonic() + 5
            while len(got) < 100 * i and time.monotonic() < deadline:
                if as_array:
                    batch = m.poll_array(0.2)
                    assert batch.dtype == events.event_dtype(skel.Event)
                    got += [_fields(e) for e in batch]
                else:
                    got += [(e.pid, e.seq, e.value, e.tag) for e in m.poll(0.2)]
        runs.append(got)
    assert len(runs[0]) == 3000
    assert runs[0] == runs[1]
    assert m.lost == 0
    assert isinstance(m.drain_array(), np.ndarray) and len(m.drain_array()) == 0


def test_short_records_zero_padded_in_arrays(objs: Any) -> None:
    pytest.importorskip("numpy")
    objs.programs.perf_short.attach()
    with pinned():
        trigger(2)
    got = objs.maps.perf_events.poll_array(2.0)
    assert [_fields(e) for e in got] == [(os.getpid(), 0, 5, b""), (os.getpid(), 1, 5, b"")]


LOSSY_SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <ebpf_gen/events.bpf.h>

struct event {
	__u32 pid;
	__u32 seq;
	__u64 value;
	char tag[8];
};

EBPF_GEN_RINGBUF(small_ring, 4096);  /* 128 records of 24 + 8 bytes */

const volatile __u32 target_pid = 0;
__u32 seq;

SEC("tracepoint/syscalls/sys_enter_getppid")
int lossy_output(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	struct event e = {.pid = target_pid, .seq = seq++, .value = 1};
	ebpf_gen_ringbuf_output(small_ring, &e, sizeof(e), 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int lossy_reserve(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	struct event *e = ebpf_gen_ringbuf_reserve(small_ring, struct event);
	if (!e)
		return 0;
	e->pid = target_pid;
	e->seq = seq++;
	e->value = 2;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def lossy(skeleton: Callable[[str, str], ModuleType]) -> ModuleType:
    """A skeleton whose ring buffer goes through <ebpf_gen/events.bpf.h>: the generator's
    compile finds the header with no -I from the user."""
    require_tool("clang")
    return skeleton("lossy_skel", LOSSY_SOURCE)


@pytest.mark.parametrize("program", ["lossy_output", "lossy_reserve"])
def test_overflowing_ring_reports_its_drops(lossy: ModuleType, reader: str,
                                             program: str) -> None:
    assert lossy.Maps.__annotations__["small_ring"] == "RingBuf[Event]"  # typed through the macro
    with lossy.load(constants={"target_pid": os.getpid()}) as objs:
        ring = objs.maps.small_ring
        ring.reader()
        getattr(objs.programs, program).attach()
        burst = 1000
        trigger(burst)  # nothing read meanwhile: the 4 KiB ring holds 128
        got = collect(ring, burst, timeout=0.5)
        assert 0 < len(got) <= 128
        assert [e.seq for e in got] == list(range(len(got)))
        assert ring.lost == burst - len(got)
        assert ring._reader.lost == ring.lost  # the reader reports the same count
        assert sum(objs.maps.small_ring__lost[0]) == ring.lost
