"""The generation-time warning for an event buffer too small for its event type, and the
shipped <ebpf_gen/events.bpf.h> found by the generator's compile (clang, no kernel)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import REPO, require_tool

SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <ebpf_gen/events.bpf.h>

struct big { __u32 pid; char path[8228]; };   /* 8232 bytes, as opensnoop's event */
struct small { __u32 pid; __u32 seq; };
struct big *unused_big __attribute__((unused));
struct small *unused_small __attribute__((unused));

EBPF_GEN_RINGBUF(events, 256 * 1024);
EBPF_GEN_RINGBUF(counts, 256 * 1024);
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int send(void *ctx)
{
	struct big *b = ebpf_gen_ringbuf_reserve(events, struct big);
	if (b)
		bpf_ringbuf_submit(b, 0);
	struct small s = {1, 2};
	ebpf_gen_ringbuf_output(counts, &s, sizeof(s), 0);
	bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &s, sizeof(s));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def generate(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    require_tool("clang")
    src = tmp_path / "cap.bpf.c"
    src.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "ebpf_gen.cli", str(src), "--output-dir", str(tmp_path / "out"),
         "--", "-I/usr/include/x86_64-linux-gnu"],
        capture_output=True, text=True, cwd=REPO,
    )


def test_warns_for_a_large_event_type_only(tmp_path: Path) -> None:
    proc = generate(tmp_path, SOURCE)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if " holds " in ln]
    assert len(lines) == 1, proc.stderr  # not for 'counts' (8-byte records) nor 'perf'
    assert lines[0].endswith(
        "cap.bpf.c: warning: ring 'events' holds 31 events of struct big (8232 bytes) in "
        "256 KiB: a burst of 32 loses events; raise its max_entries or send a smaller record"
    ), proc.stderr
    text = (tmp_path / "out" / "cap.py").read_text()
    # the header's counters are ordinary maps of the object, next to their rings
    assert "events__lost: PerCPUArrayMap" in text and "counts__lost: PerCPUArrayMap" in text


def test_perf_buffer_warning_names_the_per_cpu_size(tmp_path: Path) -> None:
    huge = SOURCE.replace("char path[8228]", "char path[8228]; char more[8192]").replace(
        "bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, &s, sizeof(s));",
        "if (b) bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, b, sizeof(*b));",
    ).replace("struct big *b = ebpf_gen_ringbuf_reserve(events, struct big);",
              "struct big *b = ebpf_gen_ringbuf_reserve(events, struct big);\n"
              "\tif (b) bpf_perf_event_output(ctx, &perf, BPF_F_CURRENT_CPU, b, 8);")
    proc = generate(tmp_path, huge)
    assert proc.returncode == 0, proc.stderr
    assert "perf buffer 'perf' holds 15 events of struct big (16424 bytes) in 256 KiB per CPU" \
        in proc.stderr, proc.stderr


def test_header_ships_with_the_package() -> None:
    from ebpf_gen import compile as compile_mod

    header = compile_mod.INCLUDE_DIR / "ebpf_gen" / "events.bpf.h"
    assert header.is_file()
    assert f"-I{compile_mod.INCLUDE_DIR}" in compile_mod.INCLUDE_FLAGS
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"include/ebpf_gen/*.h"' in pyproject


def test_objects_do_not_name_the_install_path(tmp_path: Path) -> None:
    proc = generate(tmp_path, SOURCE)
    assert proc.returncode == 0, proc.stderr
    from ebpf_gen import compile as compile_mod

    for obj in (tmp_path / "out").glob("*.o"):
        assert str(compile_mod.INCLUDE_DIR).encode() not in obj.read_bytes()
