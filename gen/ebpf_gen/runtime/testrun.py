"""BPF_PROG_TEST_RUN: run a loaded program on crafted input, without attaching it.

What cilium/ebpf's Program.Run/Test give Go users to unit-test XDP and socket programs:
``prog.test_run(packet)`` returns the verdict, the packet as the program left it, the
context as it left it (typed as ``__sk_buff`` or ``xdp_md`` where the program has one) and
the time per run.
"""

from __future__ import annotations

import ctypes
import errno as E
import os

from . import libbpf
from .errors import RuntimeBPFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .programs import Program

c_u32, c_u64, c_u8 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint8
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1  # XDP: act on the verdicts for real (5.18+)
OUT_SLACK = 4096  # room for a program that grows the packet (bpf_xdp_adjust_head/tail)


class XdpMd(ctypes.Structure):
    """struct xdp_md (uapi linux/bpf.h): an XDP program's context."""

    _fields_ = [
        ("data", c_u32),
        ("data_end", c_u32),
        ("data_meta", c_u32),
        ("ingress_ifindex", c_u32),
        ("rx_queue_index", c_u32),
        ("egress_ifindex", c_u32),
    ]


class SkBuff(ctypes.Structure):
    """struct __sk_buff (uapi linux/bpf.h): the context of tc, socket filter, cgroup_skb,
    sk_skb and lwt programs. In a test run the kernel takes and returns only some fields
    (mark, priority, ifindex, cb, tstamp, wire_len, gso_segs, gso_size, hwtstamp)."""

    _fields_ = [
        ("len", c_u32),
        ("pkt_type", c_u32),
        ("mark", c_u32),
        ("queue_mapping", c_u32),
        ("protocol", c_u32),
        ("vlan_present", c_u32),
        ("vlan_tci", c_u32),
        ("vlan_proto", c_u32),
        ("priority", c_u32),
        ("ingress_ifindex", c_u32),
        ("ifindex", c_u32),
        ("tc_index", c_u32),
        ("cb", c_u32 * 5),
        ("hash", c_u32),
        ("tc_classid", c_u32),
        ("data", c_u32),
        ("data_end", c_u32),
        ("napi_id", c_u32),
        ("family", c_u32),
        ("remote_ip4", c_u32),
        ("local_ip4", c_u32),
        ("remote_ip6", c_u32 * 4),
        ("local_ip6", c_u32 * 4),
        ("remote_port", c_u32),
        ("local_port", c_u32),
        ("data_meta", c_u32),
        ("flow_keys", c_u64),
        ("tstamp", c_u64),
        ("wire_len", c_u32),
        ("gso_segs", c_u32),
        ("sk", c_u64),
        ("gso_size", c_u32),
        ("tstamp_type", c_u8),
        ("_pad_189", c_u8 * 3),
        ("hwtstamp", c_u64),
    ]


assert ctypes.sizeof(XdpMd) == 24 and ctypes.sizeof(SkBuff) == 192  # uapi sizes

# enum bpf_prog_type -> its context struct, where test_run takes one.
_CONTEXTS: dict[int, type[ctypes.Structure]] = {
    1: SkBuff,  # SOCKET_FILTER
    3: SkBuff,  # SCHED_CLS
    4: SkBuff,  # SCHED_ACT
    6: XdpMd,  # XDP
    8: SkBuff,  # CGROUP_SKB
    10: SkBuff,  # LWT_IN
    11: SkBuff,  # LWT_OUT
    12: SkBuff,  # LWT_XMIT
}


class TestRunResult:
    """``retval`` (the verdict), ``data`` (output packet), ``ctx`` (output context: a
    ``SkBuff``/``XdpMd`` or bytes; None when the type has none), ``duration`` (seconds per
    run, the kernel's average) and ``duration_ns``."""

    __test__ = False  # not a pytest class, whatever its name
    __slots__ = ("ctx", "data", "duration_ns", "repeat", "retval")

    def __init__(
        self, retval: int, data: bytes, ctx: object, duration_ns: int, repeat: int
    ) -> None:
        self.retval = retval
        self.data = data
        self.ctx = ctx
        self.duration_ns = duration_ns
        self.repeat = repeat

    @property
    def duration(self) -> float:
        return self.duration_ns / 1e9

    def __repr__(self) -> str:
        return (
            f"<TestRunResult retval={self.retval} data={len(self.data)} bytes "
            f"duration={self.duration_ns} ns>"
        )


def context_type(program: Program) -> type[ctypes.Structure] | None:
    return _CONTEXTS.get(program.type)


def run(
    program: Program,
    data: bytes,
    ctx: object,
    repeat: int,
    data_size_out: int | None,
    flags: int = 0,
) -> TestRunResult:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"test_run data must be bytes, not {type(data).__name__}")
    if not 1 <= repeat <= 0x7FFFFFFF:
        raise ValueError(f"test_run repeat must be in 1..2147483647, not {repeat}")
    data = bytes(data)
    out_size = len(data) + OUT_SLACK if data_size_out is None else data_size_out
    if not 0 <= out_size <= 0xFFFFFFFF or len(data) > 0xFFFFFFFF:
        raise ValueError(f"test_run data_size_out out of range: {out_size}")
    program._prog("test_run")
    ctype = context_type(program)
    ctx_in: bytes | None
    ours = ctx is None  # a context we make up may be dropped where the kernel takes none
    if ctype is XdpMd and (ctx is None or isinstance(ctx, XdpMd)):
        # The kernel takes the packet's extent from the context when one is passed (and
        # one must be, to get it back): an xdp_md without data_end would run on 0 bytes.
        md = XdpMd.from_buffer_copy(ctx) if ctx is not None else XdpMd()
        if md.data_end == 0:
            md.data_end = md.data + len(data)
        ctx = md
    if ctx is None:
        ctx_in = None
    elif isinstance(ctx, ctypes.Structure):
        ctx_in = bytes(memoryview(ctx).cast("B"))
    elif isinstance(ctx, (bytes, bytearray)):
        ctx_in = bytes(ctx)
    else:
        raise TypeError(f"test_run ctx must be a ctypes struct or bytes, not {type(ctx).__name__}")
    # Packet programs (a known context) get output buffers for the packet and the context;
    # the others (raw tracepoints, syscall programs) refuse any output buffer or repeat.
    packet = ctype is not None
    if not 0 <= flags <= 0xFFFFFFFF:
        raise ValueError(f"test_run flags out of range: {flags}")
    live = bool(flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    data_in = ctypes.create_string_buffer(data, len(data)) if data else None
    # Live frames leave the machine: the kernel refuses output buffers for them.
    want_out = out_size and (packet or data) and not live
    data_out = ctypes.create_string_buffer(out_size) if want_out else None
    cin = ctypes.create_string_buffer(ctx_in, len(ctx_in)) if ctx_in else None
    cout = ctypes.create_string_buffer(ctypes.sizeof(ctype)) if ctype and not live else None
    opts = libbpf.BpfTestRunOpts(
        sz=ctypes.sizeof(libbpf.BpfTestRunOpts),
        data_in=ctypes.addressof(data_in) if data_in is not None else None,
        data_size_in=len(data),
        data_out=ctypes.addressof(data_out) if data_out is not None else None,
        data_size_out=len(data_out) if data_out is not None else 0,
        ctx_in=ctypes.addressof(cin) if cin is not None else None,
        ctx_size_in=len(ctx_in or b""),
        ctx_out=ctypes.addressof(cout) if cout is not None else None,
        ctx_size_out=len(cout) if cout is not None else 0,
        repeat=repeat if packet or repeat != 1 else 0,
        flags=flags,
    )
    ret = libbpf.lib().bpf_prog_test_run_opts(program.fd, ctypes.byref(opts))
    if ret == -E.EINVAL and ours and cout is not None:
        # Kernels before 5.13 run XDP without a context (EINVAL for any): once more bare.
        opts.ctx_in = opts.ctx_out = None
        opts.ctx_size_in = opts.ctx_size_out = 0
        cout = None
        ret = libbpf.lib().bpf_prog_test_run_opts(program.fd, ctypes.byref(opts))
    if ret < 0:
        err = -ret
        what = f"test_run of program {program.name!r} ({program.section})"
        if err == E.ENOTSUP or err == E.EOPNOTSUPP or err == 524:
            raise RuntimeBPFError(
                f"{what}: the kernel cannot test-run this program type ({program.type}): "
                "BPF_PROG_TEST_RUN supports skb, XDP, flow dissector, sk_lookup, raw "
                "tracepoint, tracing, syscall and struct_ops programs"
            )
        if err == E.ENOSPC:
            raise RuntimeBPFError(
                f"{what}: the output packet does not fit data_size_out={out_size}"
            )
        if err == E.EINVAL and len(data) < 14 and ctype is not None:
            raise RuntimeBPFError(
                f"{what}: the kernel rejected the input ({os.strerror(err)}): a packet "
                f"needs at least an Ethernet header (14 bytes), got {len(data)}"
            )
        if err == E.EINVAL and ctx_in is not None:
            raise RuntimeBPFError(
                f"{what}: the kernel rejected the context ({os.strerror(err)}): only some "
                "fields may be set (for __sk_buff: mark, priority, ifindex, cb, tstamp, "
                "wire_len, gso_segs, gso_size; for xdp_md: ingress_ifindex, rx_queue_index)"
            )
        raise libbpf.error(ret, what)
    out = data_out.raw[: opts.data_size_out] if data_out is not None else b""
    ctx_out: object = None
    if cout is not None:
        raw = cout.raw[: opts.ctx_size_out]
        if ctype is not None and 0 < len(raw) <= ctypes.sizeof(ctype):
            # Older kernels know a shorter struct (5.10's __sk_buff ends before hwtstamp):
            # the fields they do not have read as zero.
            ctx_out = ctype.from_buffer_copy(raw.ljust(ctypes.sizeof(ctype), b"\0"))
        else:
            ctx_out = raw
    return TestRunResult(
        int(ctypes.c_int32(opts.retval).value), out, ctx_out, int(opts.duration), repeat
    )
