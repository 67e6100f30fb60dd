"""The VM tier's own proof: a ksyscall kprobe fires on execve and reports through a perf
event array, loaded with plain libbpf (ctypes), independent of ebpf_gen.runtime.

Deselected on a host without kprobes (see conftest); runs in `make vmtest`.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import compile_bpf

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4);
         __uint(value_size, 4); } events SEC(".maps");
SEC("ksyscall/execve")
int on_execve(void *ctx) {
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &pid, sizeof(pid));
    return 0;
}
"""

SAMPLE_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)


def _libbpf() -> ctypes.CDLL:
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    vp = ctypes.c_void_p
    for name, res, args in [
        ("bpf_object__open_file", vp, [ctypes.c_char_p, vp]),
        ("bpf_object__load", ctypes.c_int, [vp]),
        ("bpf_object__close", None, [vp]),
        ("bpf_object__find_program_by_name", vp, [vp, ctypes.c_char_p]),
        ("bpf_object__find_map_by_name", vp, [vp, ctypes.c_char_p]),
        ("bpf_map__fd", ctypes.c_int, [vp]),
        ("bpf_program__attach", vp, [vp]),
        ("bpf_link__destroy", ctypes.c_int, [vp]),
        ("perf_buffer__new", vp, [ctypes.c_int, ctypes.c_size_t, SAMPLE_CB, vp, vp, vp]),
        ("perf_buffer__poll", ctypes.c_int, [vp, ctypes.c_int]),
        ("perf_buffer__free", None, [vp]),
    ]:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


@pytest.mark.kprobe
def test_ksyscall_execve_reaches_perf_buffer(tmp_path: Path, clang: str) -> None:
    src = tmp_path / "probe.bpf.c"
    src.write_text(SOURCE)
    obj_path = compile_bpf(src, tmp_path / "probe.bpf.o")
    lib = _libbpf()
    obj = lib.bpf_object__open_file(str(obj_path).encode(), None)
    assert obj, f"open: {os.strerror(ctypes.get_errno())}"
    try:
        assert lib.bpf_object__load(obj) == 0, "load failed"
        prog = lib.bpf_object__find_program_by_name(obj, b"on_execve")
        link = lib.bpf_program__attach(prog)
        assert link, f"ksyscall/execve attach: {os.strerror(ctypes.get_errno())}"
        pids: list[int] = []

        def on_sample(_ctx: int | None, _cpu: int, data: int | None, size: int) -> None:
            assert data is not None and size >= 4
            pids.append(ctypes.c_uint32.from_address(data).value)

        sample_cb = SAMPLE_CB(on_sample)  # kept referenced while the buffer lives

        fd = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(obj, b"events"))
        pb = lib.perf_buffer__new(fd, 8, sample_cb, None, None, None)
        assert pb, f"perf_buffer__new: {os.strerror(ctypes.get_errno())}"
        try:
            # The pid that calls execve is the child's own (fork, then exec).
            child = subprocess.Popen(["/bin/true"])
            child.wait()
            deadline = time.monotonic() + 10
            while child.pid not in pids and time.monotonic() < deadline:
                lib.perf_buffer__poll(pb, 100)
        finally:
            lib.perf_buffer__free(pb)
            lib.bpf_link__destroy(link)
        assert child.pid in pids, f"no execve event for pid {child.pid}; got {pids[:20]}"
    finally:
        lib.bpf_object__close(obj)
