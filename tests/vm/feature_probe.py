"""Probe, for real, which BPF features the running kernel has.

Each feature is one tiny BPF object (so one refused program can't hide another): it must
load, attach, and fire on a getpid() or nanosleep() from this process. "present" therefore means the
whole path works, not just that the kernel knows a program type.

Run as a script in the guest: `python tests/vm/feature_probe.py` prints JSON.
Direct ctypes over libbpf.so.1 on purpose: this is the oracle the runtime's tests are
checked against, so it must not depend on the runtime.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_PRELUDE = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
int hits;
"""

# name -> (minimum upstream version, BPF C body). The comment-free versions are the
# upstream ones; the probe, not this number, is what the table records.
SOURCES: dict[str, tuple[str, str]] = {
    "tracepoint": ("4.7", """
SEC("tracepoint/syscalls/sys_enter_getpid")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    "raw_tp": ("4.17", """
SEC("raw_tp/sys_enter")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    "tp_btf": ("5.5", """
SEC("tp_btf/sys_enter")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    "kprobe": ("4.1", """
SEC("kprobe/__x64_sys_getpid")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    "ksyscall": ("4.17", """
SEC("ksyscall/getpid")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    # do_nanosleep, not __x64_sys_getpid: libbpf >= 1.3 resolves kprobe.multi names in
    # available_filter_functions, and Debian's 6.12.117 lists __do_sys_getpid there but not
    # its wrapper (libbpf 1.1 resolved it through kallsyms and attached). The probe is of
    # the kernel, so it needs a function every libbpf finds: fentry's.
    "kprobe_multi": ("5.18", """
SEC("kprobe.multi/do_nanosleep")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    "fentry": ("5.5", """
SEC("fentry/do_nanosleep")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    "perf_event_array": ("4.4", """
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4);
         __uint(value_size, 4); } events SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getpid")
int p(void *ctx) {
    int v = 1;
    bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &v, sizeof(v));
    __sync_fetch_and_add(&hits, 1);
    return 0;
}
"""),
    "ringbuf": ("5.8", """
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } rb SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getpid")
int p(void *ctx) {
    int *v = bpf_ringbuf_reserve(&rb, sizeof(int), 0);
    if (!v) return 0;
    *v = 1;
    bpf_ringbuf_submit(v, 0);
    __sync_fetch_and_add(&hits, 1);
    return 0;
}
"""),
    "bpf_loop": ("5.17", """
static long cb(__u32 i, void *c) { __sync_fetch_and_add(&hits, 1); return 0; }
SEC("tracepoint/syscalls/sys_enter_getpid")
int p(void *ctx) { bpf_loop(1, cb, 0, 0); return 0; }
"""),
    # A kprobe attached through BPF_LINK_CREATE (a BPF link bpftool lists) rather than the
    # perf event's PERF_EVENT_IOC_SET_BPF ioctl; libbpf picks whichever the kernel has.
    "perf_link": ("5.15", """
SEC("kprobe/__x64_sys_getpid")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    "attach_cookie": ("5.15", """
SEC("kprobe/__x64_sys_getpid")
int p(void *ctx) { if (bpf_get_attach_cookie(ctx) == 0) __sync_fetch_and_add(&hits, 1);
                   return 0; }
"""),
    # tcx: a tc program as a BPF link on lo's ingress (BPF_LINK_CREATE, BPF_TCX_INGRESS),
    # fired by a UDP datagram to 127.0.0.1. Before 6.6 the kernel has no such attach type.
    "tcx": ("6.6", """
SEC("tc")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
    # BPF LSM: "present" only when the hook runs the program, i.e. CONFIG_BPF_LSM and "bpf"
    # in the active LSM list; with "bpf" missing the attach succeeds and nothing fires.
    "bpf_lsm": ("5.7", """
SEC("lsm/socket_create")
int p(void *ctx) { __sync_fetch_and_add(&hits, 1); return 0; }
"""),
}

BPF_TCX_INGRESS = 46
LO_IFINDEX = 1


@dataclass(frozen=True)
class Probe:
    feature: str
    present: bool
    detail: str


def compile_all(out_dir: Path) -> dict[str, Path]:
    """Compile every probe into out_dir (host side: the guest is slow at running clang)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objs: dict[str, Path] = {}
    for name, (_, body) in SOURCES.items():
        src = out_dir / f"{name}.bpf.c"
        obj = out_dir / f"{name}.bpf.o"
        text = _PRELUDE + body
        if not obj.exists() or not src.exists() or src.read_text() != text:
            src.write_text(text)
            cmd = ["clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_x86",
                   "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(obj)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"feature probe {name}: {' '.join(cmd)}\n{res.stderr}")
        objs[name] = obj
    return objs


def _libbpf() -> ctypes.CDLL:
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    vp = ctypes.c_void_p
    lib.bpf_object__open_file.restype = vp
    lib.bpf_object__open_file.argtypes = [ctypes.c_char_p, vp]
    lib.bpf_object__load.argtypes = [vp]
    lib.bpf_object__close.argtypes = [vp]
    lib.bpf_object__next_program.restype = vp
    lib.bpf_object__next_program.argtypes = [vp, vp]
    lib.bpf_object__find_map_by_name.restype = vp
    lib.bpf_object__find_map_by_name.argtypes = [vp, ctypes.c_char_p]
    lib.bpf_map__fd.argtypes = [vp]
    lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, vp, vp]
    lib.bpf_program__attach.restype = vp
    lib.bpf_program__fd.argtypes = [vp]
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, vp]
    lib.bpf_program__attach.argtypes = [vp]
    lib.bpf_link__destroy.argtypes = [vp]
    lib.bpf_link__fd.argtypes = [vp]
    lib.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, vp, ctypes.POINTER(ctypes.c_uint32)]
    lib.libbpf_set_print.restype = vp
    lib.libbpf_set_print.argtypes = [vp]
    lib.libbpf_set_print(None)  # the one-line detail below says enough
    return lib


def probe_one(lib: ctypes.CDLL, name: str, obj_path: Path) -> Probe:
    obj = lib.bpf_object__open_file(str(obj_path).encode(), None)
    if not obj:
        return Probe(name, False, f"open: {os.strerror(ctypes.get_errno())}")
    try:
        err = lib.bpf_object__load(obj)
        if err:
            return Probe(name, False, f"load: {os.strerror(-err)}")
        prog = lib.bpf_object__next_program(obj, None)
        if name == "tcx":  # libbpf 1.1 has no bpf_program__attach_tcx: the raw link
            link_fd = lib.bpf_link_create(lib.bpf_program__fd(prog), LO_IFINDEX,
                                          BPF_TCX_INGRESS, None)
            if link_fd < 0:
                return Probe(name, False, f"attach: {os.strerror(-link_fd)}")
            link = None
        else:
            link = lib.bpf_program__attach(prog)
            if not link:
                return Probe(name, False, f"attach: {os.strerror(ctypes.get_errno())}")
            link_fd = lib.bpf_link__fd(link)
        try:
            for _ in range(3):
                os.getpid()
                time.sleep(0.0001)  # do_nanosleep, for fentry
                # bpf_lsm: socket_create; tcx: lo's ingress (lo down: "never fired").
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
                        contextlib.suppress(OSError):
                    s.sendto(b"x", ("127.0.0.1", 9))
            # Not bpf_map__initial_value: outside a skeleton, libbpf 1.1 leaves that
            # pointing at the local copy, not the kernel's map.
            bss = lib.bpf_object__find_map_by_name(obj, b".bss")
            key, value = ctypes.c_int(0), ctypes.c_int(-1)
            lib.bpf_map_lookup_elem(lib.bpf_map__fd(bss), ctypes.byref(key),
                                    ctypes.byref(value))
            hits = value.value
            # A BPF link fd answers BPF_OBJ_GET_INFO_BY_FD; a perf event fd doesn't.
            info = ctypes.create_string_buffer(64)
            size = ctypes.c_uint32(len(info))
            is_link = lib.bpf_obj_get_info_by_fd(link_fd, info, ctypes.byref(size)) == 0
        finally:
            if link is None:
                os.close(link_fd)
            else:
                lib.bpf_link__destroy(link)
        if hits <= 0:
            return Probe(name, False, f"attached but never fired (hits={hits})")
        if name == "perf_link" and not is_link:
            return Probe(name, False, "fired, but attached by perf ioctl: no BPF link")
        return Probe(name, True, f"fired {hits}x")
    finally:
        lib.bpf_object__close(obj)


def probe_all(build_dir: Path) -> dict[str, Probe]:
    lib = _libbpf()
    objs = {name: build_dir / f"{name}.bpf.o" for name in SOURCES}
    results = {name: probe_one(lib, name, path) for name, path in objs.items()}
    btf = Path("/sys/kernel/btf/vmlinux").exists()
    results["vmlinux_btf"] = Probe("vmlinux_btf", btf, "/sys/kernel/btf/vmlinux")
    return results


def main(argv: list[str]) -> int:
    build_dir = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp())
    if not all((build_dir / f"{n}.bpf.o").exists() for n in SOURCES):
        compile_all(build_dir)
    results = probe_all(build_dir)
    print(json.dumps({k: {"present": v.present, "detail": v.detail}
                      for k, v in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
