"""Event buffers: ``PerfEventArray[E]`` and ``RingBuf[E]`` and the readers on top of them.

An event map is a handle, not a mapping: nothing is opened at load. Its reader (perf events
and mmaps, or libbpf's perf_buffer/ring_buffer) is opened by ``m.reader(...)`` or on the
first ``poll``/``events``/``async for``/``poll_array``, as cilium/ebpf's
``perf.NewReader``/``ringbuf.NewReader`` build a reader on a map on request. A map has at
most one reader open at a time: two consumers of one ring would race on its consumer
position (the kernel keeps one per ring), and a perf map's CPU slots hold one reader's
perf events.

Readers are thread-safe: a lock serializes the drains (held while a batch is taken from the
rings and decoded, never while waiting in epoll), so two threads polling one map each get
distinct events, every event once. One lock acquisition per batch costs nothing per event,
and Python users do share a reader between a thread pool's workers.

Here the rings are mapped directly and parsed in Python in one pass per wakeup: runs of
records of one size sit at a fixed stride, found from their headers with C-level slices,
and decoded straight from the ring (perf: ``data_tail`` released after the batch is
copied; ring buffer: the data pages are mapped twice, so a record never wraps, and
``consumer_pos`` advances once per pass). Every event is a copy (``E.from_buffer_copy``),
never a view into the ring. ``poll_array``/``drain_array`` give the same batch as one
numpy structured array (``numpy`` imported only then): views of the ring's runs are
concatenated, one copy per batch, before the ring space is released. A perf ring's batch
whose headers are all one sample's (one event type: a fixed stride) is checked with one
C-level comparison and taken as at most three strided views (the records before the
ring's end, the one record cut by it, those after it): no Python work per event. One
copy rather than none: a zero-copy array would have to hold the consumer position until
the user drops the array, stalling the producer for as long as the user keeps it (and a
perf ring wraps, which a view cannot).

Wake-up policy (``EventReader._wait``): a batch gathers before it is taken, so a steady
stream costs a wakeup per batch, not per event, and the producer is not throttled by
wakeups. Perf rings wake by watermark (a quarter of a ring by default) and are looked at
every ``RECHECK`` seconds besides; a ring buffer wakes its reader on the first record after
the reader caught up, so its reader lingers ``LINGER`` seconds after a wakeup (skipped
while the ring fills faster than that).

Records shorter than ``sizeof(E)`` (a program sending a truncated struct on purpose, e.g.
a trailing string cut to its length) are zero-padded to ``E``; ``short`` counts them.
Events typed ``bytes`` (no event type known) from a perf ring include the kernel's padding
(the raw size is rounded so that the record stays 8-byte aligned); ring buffer records are
exact.

Memory ordering: the kernel publishes ``data_head``/``producer_pos`` and record headers
with release stores; reading them with plain loads before the records, and writing the
tail after copying, is correct under x86's TSO. Weakly ordered CPUs (arm64, riscv64,
ppc64) need acquire/release barriers that CPython cannot emit, so there the maps are read
by libbpf's own ``perf_buffer``/``ring_buffer`` (C code with the barriers), which calls
back into Python once per record; the callback only copies the record's bytes, and the
batch is decoded after the call by the same path as ours. ``EBPF_GEN_EVENT_READER``
(``mmap`` or ``libbpf``) overrides the choice; the tests run both on x86.

``lost`` counts samples the kernel dropped because a perf ring was full (PERF_RECORD_LOST
records, counted as they are read). A BPF ring buffer has no such report: when it is full
``bpf_ringbuf_output``/``bpf_ringbuf_reserve`` fail in the program and the sample is gone.
Programs that send through ``<ebpf_gen/events.bpf.h>`` (shipped with the package, found by
the generator's compile) count those failures per CPU in a companion map ``<ring>__lost``;
``RingBuf.lost`` sums it. Without it ``lost`` reads ``lost_counter()`` when set (e.g. a BPF
global the program increments on failure), else 0.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import mmap
import os
import select
import struct
import time
from _thread import allocate_lock
from itertools import repeat

from . import libbpf
from .layout import Bitfield
from .maps import register_map_class
from .spec import MapKind

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Callable, Iterator
    from typing import Any, Generic, TypeVar

    import numpy

    from .spec import MapSpec
else:  # skeletons with event maps import this module: keep typing (and asyncio) out of it
    from ._generic import Generic, TypeVar

E = TypeVar("E")

PAGE_SIZE = mmap.PAGESIZE
RECHECK = 0.01  # seconds a lone perf event may wait when wakeups come by watermark
# Seconds a ring buffer reader lets a batch gather after a wakeup: a ring buffer wakes its
# reader on the first record after the reader caught up, so without it a steady stream of
# 200k events/s costs a wakeup and a drain per few events.
LINGER = 0.001
DEFAULT_PAGES = 64  # data pages per CPU for perf rings: 256 KiB, as bcc and libbpf tools use

# include/uapi/linux/perf_event.h
_PERF_TYPE_SOFTWARE = 1
_PERF_COUNT_SW_BPF_OUTPUT = 10
_PERF_SAMPLE_RAW = 1 << 10
_PERF_FLAG_FD_CLOEXEC = 1 << 3
_PERF_ATTR_WATERMARK = 1 << 14  # bit of the flags word
_PERF_EVENT_IOC_ENABLE = 0x2400
_PERF_EVENT_IOC_DISABLE = 0x2401
_PERF_RECORD_LOST = 2
_PERF_RECORD_SAMPLE = 9
_DATA_HEAD = 1024  # offsetof(struct perf_event_mmap_page, data_head)
_DATA_TAIL = 1032
# include/uapi/linux/bpf.h
_RINGBUF_BUSY = 1 << 31
_RINGBUF_DISCARD = 1 << 30
_RINGBUF_HDR = 8

_SYS_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "s390x": 331}
# Where plain loads and stores are ordered enough for the mmap readers (TSO).
_TSO_MACHINES = ("x86_64", "i386", "i686")
_READERS = ("mmap", "libbpf")
# libbpf callbacks: ring_buffer_sample_fn and perf_buffer_event_fn.
_RING_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.c_size_t)
_PERF_EVENT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
_LIBBPF_PERF_EVENT_CONT = -2  # enum bpf_perf_event_ret: go on with the next record

# struct perf_event_header: type, misc, size (a sample's u32 raw size follows).
_PERF_HDR = struct.Struct("<IHH")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class _PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1, known to every kernel)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup", ctypes.c_uint32),  # wakeup_events, or wakeup_watermark with the flag
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
    ]


@functools.cache
def _libc() -> ctypes.CDLL:
    # The process's own libc (ctypes.util.find_library would run ldconfig in a subprocess).
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.restype = ctypes.c_int
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def _mmap(fd: int, length: int, prot: int, offset: int, what: str) -> int:
    addr = _libc().mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise libbpf.error(ctypes.get_errno(), what)
    return int(addr)


def _munmap(addr: int, length: int) -> None:
    _libc().munmap(addr, length)


def online_cpus() -> list[int]:
    """CPUs listed in /sys/devices/system/cpu/online ("0-3,5")."""
    with open("/sys/devices/system/cpu/online") as f:
        text = f.read().strip()
    cpus: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def reader_kind() -> str:
    """Which reader event maps open: ``mmap`` (ours, batched) where the CPU is TSO, else
    ``libbpf`` (see the module docstring); ``EBPF_GEN_EVENT_READER`` overrides."""
    forced = os.environ.get("EBPF_GEN_EVENT_READER")
    if forced:
        if forced not in _READERS:
            raise ValueError(
                f"EBPF_GEN_EVENT_READER={forced!r}: want one of {', '.join(_READERS)}"
            )
        return forced
    return "mmap" if os.uname().machine in _TSO_MACHINES else "libbpf"


def _bpf_output_attr(wakeup_bytes: int) -> _PerfEventAttr:
    """A BPF_OUTPUT software event sampling raw records; woken per event, or once
    ``wakeup_bytes`` are pending (watermark)."""
    return _PerfEventAttr(
        type=_PERF_TYPE_SOFTWARE,
        size=ctypes.sizeof(_PerfEventAttr),
        config=_PERF_COUNT_SW_BPF_OUTPUT,
        sample_period=1,
        sample_type=_PERF_SAMPLE_RAW,
        flags=_PERF_ATTR_WATERMARK if wakeup_bytes else 0,
        wakeup=wakeup_bytes or 1,
    )


def _perf_event_open(cpu: int, wakeup_bytes: int) -> int:
    machine = os.uname().machine  # platform.machine(), without importing platform
    sysno = _SYS_PERF_EVENT_OPEN.get(machine)
    if sysno is None:
        raise OSError(f"perf_event_open: unknown syscall number on {machine}")
    attr = _bpf_output_attr(wakeup_bytes)
    fd = int(
        _libc().syscall(
            ctypes.c_long(sysno), ctypes.byref(attr), ctypes.c_int(-1), ctypes.c_int(cpu),
            ctypes.c_int(-1), ctypes.c_ulong(_PERF_FLAG_FD_CLOEXEC),
        )
    )
    if fd < 0:
        raise libbpf.error(ctypes.get_errno(), f"perf_event_open(BPF_OUTPUT, cpu {cpu})")
    return fd


# -- decoding: one path for every reader ------------------------------------------------
#
# A reader's parse hands runs of records (``count`` records ``stride`` bytes apart, each
# ``size`` bytes long) and lone records to a sink; the sink copies them out (event objects
# or one numpy array) before the reader gives the ring space back.


class _Objects:
    """Records decoded into event objects (``bytes`` when the map has no event type)."""

    def __init__(self, event: type[Any] | None) -> None:
        self.size = ctypes.sizeof(event) if event is not None else 0
        self._copy: Callable[..., Any] | None = (
            event.from_buffer_copy if event is not None else None
        )
        self.out: list[Any] = []

    def one(self, buf: Any, off: int, size: int) -> None:
        copy = self._copy
        if copy is None:
            self.out.append(bytes(buf[off : off + size]))
        elif size >= self.size:
            self.out.append(copy(buf, off))
        else:
            self.out.append(copy(bytes(buf[off : off + size]).ljust(self.size, b"\0")))

    def run(self, buf: Any, start: int, count: int, stride: int, size: int) -> None:
        copy = self._copy
        stop = start + count * stride
        if copy is None:
            self.out += [bytes(buf[o : o + size]) for o in range(start, stop, stride)]
        elif size >= self.size:  # map: the loop runs in C, no bytecode per event
            self.out += map(copy, repeat(buf, count), range(start, stop, stride))
        else:
            for o in range(start, stop, stride):
                self.one(buf, o, size)

    def finish(self) -> list[Any]:
        out, self.out = self.out, []
        return out

    def perf_region(self, ring: _PerfRing, pos: int, head: int) -> bool:
        return False  # objects cost a copy each anyway: the general path's runs suffice

    def same_prefix(self, words: memoryview, first: int, step: int, count: int) -> int:
        return _same_prefix(words, first, step, count)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as e:  # an optional extra: say which
        raise ImportError(
            "poll_array()/drain_array() need numpy: pip install 'ebpf-gen[numpy]'"
        ) from e
    return numpy


def event_dtype(event: type[Any]) -> numpy.dtype[numpy.void]:
    """The numpy structured dtype laid out exactly as the ctypes event type: same field
    offsets, nested structs and unions as nested dtypes, padding kept (``itemsize`` is
    ``sizeof``), ``char[N]`` as ``S{N}`` (bytes, as the objects show it). Bitfields have
    no numpy equivalent: refused with TypeError naming the field."""
    dtype = _DTYPES.get(event)
    if dtype is None:
        np = _numpy()
        dtype = _DTYPES[event] = np.dtype(_dtype_of(np, event, event.__name__))
    return dtype


_DTYPES: dict[type[Any], numpy.dtype[numpy.void]] = {}


def _dtype_of(np: Any, ctype: Any, where: str) -> Any:
    if issubclass(ctype, (ctypes.Structure, ctypes.Union)):
        for attr, value in vars(ctype).items():
            if isinstance(value, Bitfield):  # generated: raw storage bytes + a descriptor
                raise TypeError(
                    f"{where}.{attr} is a bitfield (bits of {value.storage_field}): numpy has "
                    "no dtype for it; read this map with poll() (event objects) instead"
                )
        names, formats, offsets = [], [], []
        for field in ctype._fields_:
            name, ftype = field[0], field[1]
            if len(field) > 2:
                raise TypeError(
                    f"{where}.{name} is a bitfield: numpy has no dtype for it; "
                    "read this map with poll() (event objects) instead"
                )
            names.append(name)
            formats.append(_dtype_of(np, ftype, f"{where}.{name}"))
            offsets.append(getattr(ctype, name).offset)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": ctypes.sizeof(ctype)})
    if issubclass(ctype, ctypes.Array):
        if ctype._type_ is ctypes.c_char:
            return np.dtype(f"S{ctype._length_}")
        return np.dtype((_dtype_of(np, ctype._type_, where), (ctype._length_,)))
    return np.dtype(ctype)


class _Arrays:
    """Records gathered as numpy views of the ring's runs, copied once into one array.

    The views are of opaque records (``V{sizeof(E)}``, ``stride`` apart): numpy copies
    those a record at a time, where a copy of the structured dtype goes field by field
    (and one of byte rows a byte loop per row). The result is viewed as ``event_dtype(E)``.
    """

    def __init__(self, name: str, event: type[Any] | None) -> None:
        if event is None:
            raise TypeError(
                f"event map {name!r}: no event type is known (events read as bytes), so "
                "there is no dtype for poll_array(); give the map a type (see the README)"
            )
        self._np = np = _numpy()
        self.dtype = event_dtype(event)
        self.size = self.dtype.itemsize
        self._raw = np.dtype(f"V{self.size}")
        self._view = np.ndarray
        self._parts: list[Any] = []
        self._count = 0

    def one(self, buf: Any, off: int, size: int) -> None:
        record = bytes(buf[off : off + min(size, self.size)]).ljust(self.size, b"\0")
        self._parts.append(self._np.frombuffer(record, self._raw))
        self._count += 1

    def run(self, buf: Any, start: int, count: int, stride: int, size: int) -> None:
        if size < self.size:
            for o in range(start, start + count * stride, stride):
                self.one(buf, o, size)
            return
        self._parts.append(self._view((count,), self._raw, buffer=buf, offset=start,
                                      strides=(stride,)))
        self._count += count

    def same_prefix(self, words: memoryview, first: int, step: int, count: int) -> int:
        """``_same_prefix``, vectorized: the headers of a run compared in one pass."""
        heads = self._np.frombuffer(words, words.format)[first : first + step * count : step]
        differ = self._np.flatnonzero(heads != heads[0])
        return int(differ[0]) if len(differ) else count

    def perf_region(self, ring: _PerfRing, pos: int, head: int) -> bool:
        """Take every record between ``pos`` and ``head`` as strided views, if they are
        all samples with one header (one event type and size: a fixed stride); False,
        taking nothing, otherwise (LOST records, mixed or short records: the general path).

        The headers are compared as one strided slice of the ring's words against the
        first header repeated (memoryview and bytes: C loops with less per-call cost than
        numpy's, and a batch after a wakeup runs on cold caches, where each call's own
        cost counts: 15% of the batch's CPU, measured). The records of a region that wraps
        around the ring's end are at most three pieces: those before the end, the one
        record cut by it, those after it. No Python per event.
        """
        words = ring.words
        size, esize = ring.size, self.size
        off = pos & (size - 1)
        first = words[off >> 3]
        rsize = first >> 48
        if first & 0xFFFFFFFF != _PERF_RECORD_SAMPLE or rsize < 16 or (head - pos) % rsize:
            return False
        if rsize - 12 < esize:  # raw size: records shorter than E are padded one by one
            return False
        count = (head - pos) // rsize
        step = rsize >> 3
        header = words[off >> 3 : (off >> 3) + 1].tobytes()
        view, raw, data = self._view, self._raw, ring.data
        end = off + count * rsize
        if end <= size:
            if words[off >> 3 : end >> 3 : step].tobytes() != header * count:
                return False
            self._parts.append(view((count,), raw, buffer=data, offset=off + 12,
                                    strides=(rsize,)))
            self._count += count
            return True
        before = -(-(size - off) // rsize)  # headers before the ring's end
        after = off + before * rsize - size  # where the next header is, from the start
        if (words[off >> 3 :: step][:before].tobytes() != header * before
                or words[after >> 3 :: step][: count - before].tobytes()
                != header * (count - before)):
            return False
        # Records whose event lies wholly before the end, then from the start again.
        whole = max(0, min(count, (size - off - 12 - esize) // rsize + 1))
        resume = -(-(size - off - 12) // rsize)
        if whole:
            self._parts.append(view((whole,), raw, buffer=data, offset=off + 12,
                                    strides=(rsize,)))
        for k in range(whole, min(resume, count)):  # at most one: cut by the ring's end
            start = off + k * rsize + 12
            base = ctypes.addressof(data)
            self._parts.append(self._np.frombuffer(
                ctypes.string_at(base + start, size - start)
                + ctypes.string_at(base, esize - (size - start)), raw))
        if resume < count:
            self._parts.append(view((count - resume,), raw, buffer=data,
                                    offset=off + resume * rsize + 12 - size, strides=(rsize,)))
        self._count += count
        return True

    def finish(self) -> Any:
        parts, self._parts = self._parts, []
        count, self._count = self._count, 0
        np = self._np
        out = np.empty(count, self.dtype)
        if not parts:
            return out
        # Copied as opaque records (a structured copy goes field by field): a raw view of
        # the result, made without numpy's Python-level view checks.
        flat = self._view((count,), self._raw, buffer=out)
        if len(parts) == 1:
            flat[:] = parts[0]  # the one copy, out of the ring
            return out
        row = 0
        for part in parts:
            flat[row : row + len(part)] = part
            row += len(part)
        return out


def _same_prefix(words: memoryview, first: int, step: int, count: int) -> int:
    """How many of ``count`` words ``step`` apart from index ``first`` equal the first one.

    A batch of records of one type and size has identical headers at a fixed stride, so a
    C-level slice and list count replaces a Python loop over headers. Chunks grow from small
    so that a mix of record kinds costs little more than the plain loop.
    """
    head = words[first]
    done, chunk = 0, 16
    while done < count:
        n = min(chunk, count - done)
        heads = words[first + done * step :: step][:n].tolist()
        if heads.count(head) != n:
            return done + next(i for i, h in enumerate(heads) if h != head)
        done += n
        chunk *= 4
    return done




class _PerfRing:
    """One CPU's BPF_OUTPUT perf event and its mmap'd ring (1 metadata + 2^n data pages)."""

    def __init__(self, cpu: int, pages: int, wakeup_bytes: int) -> None:
        self.cpu = cpu
        self.fd = _perf_event_open(cpu, wakeup_bytes)
        self.length = PAGE_SIZE * (1 + pages)
        try:
            # Mapped writable: a read-only perf mapping means overwrite mode (no data_tail).
            self.base = _mmap(
                self.fd, self.length, mmap.PROT_READ | mmap.PROT_WRITE, 0,
                f"mmap perf ring of cpu {cpu}",
            )
        except BaseException:
            os.close(self.fd)
            raise
        self.size = PAGE_SIZE * pages
        self.data = (ctypes.c_char * self.size).from_address(self.base + PAGE_SIZE)
        self.words = memoryview(self.data).cast("B").cast("Q")  # records are 8-byte aligned
        self.head = ctypes.c_uint64.from_address(self.base + _DATA_HEAD)
        self.tail_ptr = ctypes.c_uint64.from_address(self.base + _DATA_TAIL)
        self.tail = self.tail_ptr.value

    def enable(self) -> None:
        fcntl.ioctl(self.fd, _PERF_EVENT_IOC_ENABLE, 0)

    def release(self, tail: int) -> None:
        """Give the kernel back everything before ``tail`` (after it was copied out)."""
        self.tail_ptr.value = self.tail = tail

    def close(self) -> None:
        if self.fd >= 0:
            self.words.release()
            _munmap(self.base, self.length)
            os.close(self.fd)
            self.fd = -1


class EventReader(Generic[E]):
    """A reader on one event map (``m.reader()``, or opened by the map's first ``poll``).

    ``poll``/``drain`` return event objects, ``poll_array``/``drain_array`` the same batch
    as one numpy structured array (``event_dtype(E)``). Thread-safe (see the module
    docstring); closed with ``close()`` or ``with``, and with the map's object.
    """

    def __init__(self, name: str, event: type[Any] | None) -> None:
        self.name = name
        self.event = event
        self._epoll = select.epoll()
        self._loops: set[asyncio.AbstractEventLoop] = set()
        self._lock = allocate_lock()
        self._objects = _Objects(event)
        self._arrays: _Arrays | None = None
        self._lost = 0
        self.short = 0
        self.closed = False
        # With watermark wakeups a lone event raises no wakeup: look at the rings this often.
        self.recheck: float | None = None
        self.linger = 0.0  # seconds a ring buffer's batch may gather after a wakeup
        self._filling = False
        self.lost_counter: Callable[[], int] | None = None  # set by RingBuf (the header's map)
        self._on_close: Callable[[EventReader[E]], None] | None = None

    @property
    def lost(self) -> int:
        """Samples dropped so far: perf rings' PERF_RECORD_LOST counts; for a ring buffer,
        its ``<ring>__lost`` counter (see the module docstring)."""
        if self.lost_counter is not None:
            return self._lost + self.lost_counter()
        return self._lost

    # -- one batch ------------------------------------------------------------------------

    def _take(self, sink: _Objects | _Arrays) -> Any:
        """Parse what the rings hold into ``sink``, finish it, release the space."""
        raise NotImplementedError

    def _batch(self, sink: _Objects | _Arrays) -> Any:
        with self._lock:
            if self.closed:
                raise ValueError(f"event map {self.name!r}: the reader is closed")
            return self._take(sink)

    def drain(self) -> list[E]:
        """The events ready now, without waiting."""
        out: list[E] = self._batch(self._objects)
        return out

    def drain_array(self) -> numpy.ndarray[Any, numpy.dtype[numpy.void]]:
        """The events ready now as one structured array (empty if none), without waiting."""
        if self._arrays is None:
            self._arrays = _Arrays(self.name, self.event)
        return self._batch(self._arrays)  # type: ignore[no-any-return]

    def poll(self, timeout: float) -> list[E]:
        """Wait up to ``timeout`` seconds for the first event, then return all that are ready."""
        return self._wait(self.drain, timeout)  # type: ignore[no-any-return]

    def poll_array(self, timeout: float) -> numpy.ndarray[Any, numpy.dtype[numpy.void]]:
        """``poll``, the batch as one structured array."""
        return self._wait(self.drain_array, timeout)  # type: ignore[no-any-return]

    def _wait(self, drain: Callable[[], Any], timeout: float) -> Any:
        """The wake-up policy: let a batch gather before taking it, so that a steady
        stream costs a wakeup per batch, not per event, and the producer is not throttled.

        Perf rings woken by watermark: wait for the watermark (or ``recheck``, the most a
        lone event waits) before every drain. Ring buffers: ``linger`` seconds between a
        wakeup (or a small batch) and the drain, skipped while the ring is filling faster
        than that (the last batch took an eighth of it). ``timeout <= 0`` drains now.
        """
        if timeout <= 0:
            return drain()
        now = time.monotonic()
        deadline = now + timeout
        if self.recheck is not None:  # watermark: gather until it, or the recheck tick
            self._epoll.poll(max(min(timeout, self.recheck), 0.001))
        elif self.linger and not self._filling:
            time.sleep(min(self.linger, timeout))
        while True:
            out = drain()
            if len(out):
                self._filling = self._filling_after(len(out))
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            if self._pending():  # records came after the drain read the ring: no wakeup
                continue
            if self.recheck is not None:
                remaining = min(remaining, self.recheck)
            # epoll_wait takes milliseconds; rounding up keeps the wait from ending early.
            self._epoll.poll(max(remaining, 0.001))
            if self.linger:
                time.sleep(min(self.linger, max(deadline - time.monotonic(), 0)))

    def _pending(self) -> bool:
        """Records are in the ring now (checked after a drain, before sleeping on epoll)."""
        return False

    def _filling_after(self, events: int) -> bool:
        """Whether a batch of ``events`` means the ring fills faster than ``linger``."""
        return False

    def events(self, timeout: float | None = None) -> Iterator[E]:
        """Events as they come; ends after ``timeout`` seconds without one (None: never)."""
        while True:
            batch = self.poll(86400.0 if timeout is None else timeout)
            if not batch and timeout is not None:
                return
            yield from batch

    async def __aiter__(self) -> AsyncIterator[E]:
        import asyncio  # only async readers pay for it (a third of a skeleton's start-up)
        import contextlib

        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        fd = self._epoll.fileno()
        loop.add_reader(fd, ready.set)
        self._loops.add(loop)
        try:
            while True:
                ready.clear()
                batch = self.drain()
                if not batch:
                    if self.recheck is None:
                        await ready.wait()
                    else:
                        with contextlib.suppress(asyncio.TimeoutError):
                            await asyncio.wait_for(ready.wait(), self.recheck)
                    continue
                for ev in batch:
                    yield ev
        finally:
            self._forget_loop(loop)

    def _forget_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop in self._loops:
            self._loops.discard(loop)
            if not loop.is_closed() and not self._epoll.closed:
                loop.remove_reader(self._epoll.fileno())

    # -- life -----------------------------------------------------------------------------

    def _release(self) -> None:
        """Free the rings (subclasses); called once, under the lock."""

    def close(self) -> None:
        """Close the rings (events not yet read are gone). Idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            try:
                self._release()
            finally:
                for loop in list(self._loops):
                    self._forget_loop(loop)
                self._epoll.close()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> EventReader[E]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} on {self.name!r} ({state})>"


def _perf_wakeup(name: str, pages: int, wakeup_bytes: int | None) -> int:
    """Check the perf ring's shape (before anything is opened or closed) and return the
    watermark in bytes (0: wake on every event)."""
    if type(pages) is not int or pages <= 0 or pages & (pages - 1):
        raise ValueError(f"perf map {name!r}: pages must be a power of 2, got {pages!r}")
    if pages * PAGE_SIZE > 1 << 31:
        raise ValueError(f"perf map {name!r}: pages={pages} is more than 2 GiB per CPU")
    if wakeup_bytes is None:
        return pages * PAGE_SIZE // 4
    if type(wakeup_bytes) is not int or not 0 <= wakeup_bytes <= pages * PAGE_SIZE:
        raise ValueError(
            f"perf map {name!r}: wakeup_bytes must be 0..{pages * PAGE_SIZE} (the ring's "
            f"size), got {wakeup_bytes!r}"
        )
    return wakeup_bytes


def _forget_perf_event(map_fd: int, cpu: int) -> None:
    """Drop the perf map's own reference to ``cpu``'s perf event, so that the event goes
    with the reader that opened it."""
    key = ctypes.c_int(cpu)
    libbpf.lib().bpf_map_delete_elem(map_fd, ctypes.byref(key))


class _PerfReader(EventReader[E]):
    def __init__(
        self, map_fd: int, name: str, event: type[Any] | None, pages: int,
        wakeup_bytes: int | None,
    ) -> None:
        wakeup_bytes = _perf_wakeup(name, pages, wakeup_bytes)
        super().__init__(name, event)
        self._map_fd = map_fd
        self.recheck = RECHECK if wakeup_bytes else None
        self._rings: list[_PerfRing] = []
        try:
            for cpu in online_cpus():
                ring = _PerfRing(cpu, pages, wakeup_bytes)
                self._rings.append(ring)
                key, value = ctypes.c_int(cpu), ctypes.c_int(ring.fd)
                ret = libbpf.lib().bpf_map_update_elem(
                    map_fd, ctypes.byref(key), ctypes.byref(value), 0
                )
                if ret == -7:  # E2BIG: the map has fewer slots than CPUs; leave the rest
                    ring.close()
                    self._rings.pop()
                    continue
                libbpf.check(ret, f"perf map {name!r}: store the perf event fd of cpu {cpu}")
                ring.enable()
                self._epoll.register(ring.fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    def _pending(self) -> bool:
        return any(ring.head.value != ring.tail for ring in self._rings)

    def _take(self, sink: _Objects | _Arrays) -> Any:
        taken: list[tuple[_PerfRing, int]] = []
        for ring in self._rings:
            head = ring.head.value
            if head != ring.tail:
                taken.append((ring, self._parse(ring, head, sink)))
        out = sink.finish()
        for ring, tail in taken:
            ring.release(tail)
        return out

    def _parse(self, ring: _PerfRing, head: int, sink: _Objects | _Arrays) -> int:
        """Hand the records between the ring's tail and ``head`` to ``sink``; the new tail."""
        data, words, size = ring.data, ring.words, ring.size
        mask = size - 1
        unpack = _PERF_HDR.unpack_from
        pos = ring.tail
        if sink.perf_region(ring, pos, head):
            return head
        while pos < head:
            off = pos & mask  # 8-byte aligned: a header never straddles the ring's end
            rtype, _, rsize = unpack(data, off)
            if rsize == 0:  # a corrupt header would loop forever: drop the rest
                return head
            if rtype == _PERF_RECORD_SAMPLE:
                room = min(head - pos, size - off) // rsize  # whole records before the end
                if room:
                    count = sink.same_prefix(words, off // 8, rsize // 8, room)
                    raw = _U32.unpack_from(data, off + 8)[0]
                    if raw < sink.size:
                        self.short += count
                    sink.run(data, off + 12, count, rsize, raw)
                    pos += count * rsize
                    continue
                # This record wraps around the ring's end: put its two pieces together.
                first = size - off
                base = ctypes.addressof(data)
                record = ctypes.string_at(base + off, first) + ctypes.string_at(
                    base, rsize - first
                )
                raw = _U32.unpack_from(record, 8)[0]
                if raw < sink.size:
                    self.short += 1
                sink.one(record, 12, raw)
            elif rtype == _PERF_RECORD_LOST:
                # struct { header; u64 id; u64 lost; }: 8-byte words, each within the ring
                self._lost += _U64.unpack_from(data, (off + 16) & mask)[0]
            pos += rsize
        return pos

    def _release(self) -> None:
        for ring in self._rings:
            _forget_perf_event(self._map_fd, ring.cpu)
            ring.close()
        self._rings.clear()


class _RingBufReader(EventReader[E]):
    def __init__(self, map_fd: int, name: str, event: type[Any] | None, size: int,
                 linger: float) -> None:
        super().__init__(name, event)
        self._size = size
        self._taken = 0  # bytes the last drain took
        self._cons_len = PAGE_SIZE
        self._prod_len = PAGE_SIZE + 2 * size
        self._cons_base = self._prod_base = 0
        try:
            self._cons_base = _mmap(
                map_fd, self._cons_len, mmap.PROT_READ | mmap.PROT_WRITE, 0,
                f"ring buffer {name!r}: mmap consumer page",
            )
            # The kernel maps the data pages twice in a row: records never wrap.
            self._prod_base = _mmap(
                map_fd, self._prod_len, mmap.PROT_READ, PAGE_SIZE,
                f"ring buffer {name!r}: mmap producer and data pages",
            )
            self._epoll.register(map_fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise
        self._cons_ptr = ctypes.c_uint64.from_address(self._cons_base)
        self._prod_ptr = ctypes.c_uint64.from_address(self._prod_base)
        self._cons = self._cons_ptr.value
        self._data = (ctypes.c_char * (2 * size)).from_address(self._prod_base + PAGE_SIZE)
        self._words = memoryview(self._data).cast("B").cast("I")
        self.linger = linger
        self._eighth = size // 8

    def _pending(self) -> bool:
        return bool(self._prod_base) and self._prod_ptr.value != self._cons

    def _filling_after(self, events: int) -> bool:
        return self._taken >= self._eighth

    def _take(self, sink: _Objects | _Arrays) -> Any:
        unpack = _U32.unpack_from
        data, words = self._data, self._words
        mask = self._size - 1
        cons = self._cons
        prod = self._prod_ptr.value
        while cons < prod:
            off = cons & mask
            hdr = unpack(data, off)[0]
            if hdr & _RINGBUF_BUSY:
                break
            length = hdr & ~(_RINGBUF_BUSY | _RINGBUF_DISCARD)
            stride = (length + _RINGBUF_HDR + 7) & ~7
            if hdr & _RINGBUF_DISCARD:
                cons += stride
                continue
            # Headers are read from the live ring, in order, before the records they cover:
            # a header seen committed means its record is complete.
            count = sink.same_prefix(words, off // 4, stride // 4, (prod - cons) // stride)
            if length < sink.size:
                self.short += count
            sink.run(data, off + _RINGBUF_HDR, count, stride, length)
            cons += count * stride
        out = sink.finish()
        self._taken = cons - self._cons
        if cons != self._cons:
            self._cons_ptr.value = self._cons = cons
        return out

    def _release(self) -> None:
        if self._prod_base:
            self._words.release()
            _munmap(self._prod_base, self._prod_len)
            self._prod_base = 0
        if self._cons_base:
            _munmap(self._cons_base, self._cons_len)
            self._cons_base = 0


class _PerfRecordHead(ctypes.Structure):
    """struct perf_event_header, then a sample's u32 raw size."""

    _fields_ = [("type", ctypes.c_uint32), ("misc", ctypes.c_uint16),
                ("size", ctypes.c_uint16), ("raw", ctypes.c_uint32)]


@functools.lru_cache(maxsize=64)
def _chars(size: int) -> type[ctypes.Array[ctypes.c_char]]:
    """``c_char * size``, made once per size (records of one type have one size)."""
    return ctypes.c_char * size


class _LibbpfReader(EventReader[E]):
    """What libbpf's two readers share: a handle whose epoll fd joins ours, consumed under
    the lock. The per-record callback only copies the record's bytes; the batch is then
    decoded as the mmap readers decode theirs. Subclasses name the libbpf functions."""

    _consume = _epoll_fd = _free = ""

    def __init__(self, name: str, event: type[Any] | None,
                 open_handle: Callable[[], int | None], what: str) -> None:
        super().__init__(name, event)
        self._handle: int | None = None
        try:
            self._handle = libbpf.check_ptr(open_handle(), what)
            fd = getattr(libbpf.lib(), self._epoll_fd)(self._handle)
            self._epoll.register(fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    _chunks: list[bytes]  # filled by the callback during consume

    def _take(self, sink: _Objects | _Arrays) -> Any:
        chunks = self._chunks
        libbpf.check(getattr(libbpf.lib(), self._consume)(self._handle), self._consume)
        if chunks:
            batch = chunks[:]
            chunks.clear()
            self._decode(batch, sink)
        return sink.finish()

    def _decode(self, chunks: list[bytes], sink: _Objects | _Arrays) -> None:
        n, size = len(chunks), len(chunks[0])
        if size and len(set(map(len, chunks))) == 1:  # one run at a fixed stride
            if size < sink.size:
                self.short += n
            sink.run(b"".join(chunks), 0, n, size, size)
            return
        for chunk in chunks:
            if len(chunk) < sink.size:
                self.short += 1
            sink.one(chunk, 0, len(chunk))

    def _release(self) -> None:
        if self._handle is not None:
            getattr(libbpf.lib(), self._free)(self._handle)
            self._handle = None


class _LibbpfPerfReader(_LibbpfReader[E]):
    """libbpf's perf_buffer, raw: our perf_event_attr, so ``wakeup_bytes`` keeps its
    meaning and PERF_RECORD_LOST records reach ``lost``."""

    _consume, _epoll_fd, _free = (
        "perf_buffer__consume", "perf_buffer__epoll_fd", "perf_buffer__free")

    def __init__(
        self, map_fd: int, name: str, event: type[Any] | None, pages: int,
        wakeup_bytes: int | None,
    ) -> None:
        wakeup_bytes = _perf_wakeup(name, pages, wakeup_bytes)
        self._map_fd = map_fd
        self._attr = _bpf_output_attr(wakeup_bytes)
        self._chunks = chunks = list[bytes]()
        append, head_at, chars = chunks.append, _PerfRecordHead.from_address, _chars
        u64 = ctypes.c_uint64.from_address

        # This runs once per record: one ctypes object for the header and one for the
        # bytes (``from_address(...).raw``), not ctypes.string_at (a Python wrapper around
        # a foreign call, 3x the cost) nor a ctypes integer per field.
        def record(_ctx: Any, _cpu: int, header: int) -> int:
            head = head_at(header)
            rtype = head.type
            if rtype == _PERF_RECORD_SAMPLE:  # header (8 bytes), u32 raw size, raw data
                append(chars(head.raw).from_address(header + 12).raw)
            elif rtype == _PERF_RECORD_LOST:  # header, u64 id, u64 lost
                self._lost += u64(header + 16).value
            return _LIBBPF_PERF_EVENT_CONT

        self._callback = _PERF_EVENT_FN(record)  # held: libbpf keeps the pointer
        super().__init__(name, event, lambda: libbpf.lib().perf_buffer__new_raw(
            map_fd, pages, ctypes.byref(self._attr),
            ctypes.cast(self._callback, ctypes.c_void_p), None, None,
        ), f"perf map {name!r}: perf_buffer__new_raw")
        self.recheck = RECHECK if wakeup_bytes else None

    def _release(self) -> None:
        opened = self._handle is not None
        super()._release()
        if opened:  # libbpf closed its perf events; the map still holds them
            for cpu in online_cpus():
                _forget_perf_event(self._map_fd, cpu)


class _LibbpfRingReader(_LibbpfReader[E]):
    """libbpf's ring_buffer."""

    _consume, _epoll_fd, _free = (
        "ring_buffer__consume", "ring_buffer__epoll_fd", "ring_buffer__free")

    def __init__(self, map_fd: int, name: str, event: type[Any] | None, size: int,
                 linger: float) -> None:
        self._chunks = chunks = list[bytes]()
        append, chars = chunks.append, _chars

        def record(_ctx: Any, data: int, size: int) -> int:  # see _LibbpfPerfReader's
            append(chars(size).from_address(data).raw)
            return 0

        self._callback = _RING_SAMPLE_FN(record)  # held: libbpf keeps the pointer
        super().__init__(name, event, lambda: libbpf.lib().ring_buffer__new(
            map_fd, ctypes.cast(self._callback, ctypes.c_void_p), None, None,
        ), f"ring buffer {name!r}: ring_buffer__new")
        self.linger = linger
        self._eighth = size // 8
        self._taken = 0

    def _decode(self, chunks: list[bytes], sink: _Objects | _Arrays) -> None:
        self._taken = sum(map(len, chunks)) + _RINGBUF_HDR * len(chunks)
        super()._decode(chunks, sink)

    def _filling_after(self, events: int) -> bool:
        return self._taken >= self._eighth


# -- the maps ------------------------------------------------------------------------------


class _EventMap(Generic[E]):
    """Shared surface of the two event maps: a handle (name, fd, spec) that opens one reader
    on request, and the reader's methods, which open it with default options if needed.

    Not a mapping: a perf map's entries are the reader's own perf events, and a ring buffer
    has none; ``dict`` operations would only break the reader.
    """

    def __init__(self, spec: MapSpec, fd: int, owner: object) -> None:
        self.spec = spec
        self.name = spec.name
        self.kind = spec.kind
        self.fd = fd
        self.max_entries = spec.max_entries
        # Keeps the bpf_object (and thus fd) alive as long as this handle is reachable.
        self.owner = owner
        self._reader: EventReader[E] | None = None
        self._lost_before = 0  # what readers closed earlier counted
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.kind.name} fd={self.fd}>"

    def _open_reader(self) -> EventReader[E]:
        """The open reader, or a new one with default options."""
        reader = self._reader
        if reader is None:
            reader = self.reader()
        return reader

    def _check_can_open(self) -> None:
        if self._closed:
            raise ValueError(f"event map {self.name!r} is closed")
        if self._reader is not None:
            raise ValueError(
                f"event map {self.name!r} already has a reader open: close it first "
                "(one consumer per ring; two would each lose what the other takes)"
            )

    def _adopt(self, reader: EventReader[E]) -> EventReader[E]:
        self._reader = reader
        reader._on_close = self._reader_closed
        return reader

    def _reader_closed(self, reader: EventReader[E]) -> None:
        if self._reader is reader:
            self._reader = None
            self._lost_before += reader._lost

    def reader(self) -> EventReader[E]:
        raise NotImplementedError

    def poll(self, timeout: float) -> list[E]:
        """Wait up to ``timeout`` seconds for the first event, then return all that are ready."""
        return self._open_reader().poll(timeout)

    def drain(self) -> list[E]:
        """The events ready now, without waiting."""
        return self._open_reader().drain()

    def poll_array(self, timeout: float) -> numpy.ndarray[Any, numpy.dtype[numpy.void]]:
        """``poll``, the batch as one numpy structured array of ``event_dtype(E)``."""
        return self._open_reader().poll_array(timeout)

    def drain_array(self) -> numpy.ndarray[Any, numpy.dtype[numpy.void]]:
        """``drain``, as one numpy structured array (empty if nothing is ready)."""
        return self._open_reader().drain_array()

    def events(self, timeout: float | None = None) -> Iterator[E]:
        """Events as they come; ends after ``timeout`` seconds without one (None: never)."""
        return self._open_reader().events(timeout)

    def __aiter__(self) -> AsyncIterator[E]:
        return self._open_reader().__aiter__()

    @property
    def lost(self) -> int:
        """Samples dropped so far, over every reader this map had (see the module docstring)."""
        reader = self._reader
        return self._lost_before + (reader._lost if reader is not None else 0)

    @property
    def short(self) -> int:
        """Records shorter than the event type, zero-padded (by the open reader)."""
        return self._reader.short if self._reader is not None else 0

    def close(self) -> None:
        """Close the reader, if one is open; the map's fd belongs to its object."""
        self._closed = True
        if self._reader is not None:
            self._reader.close()


class PerfEventArray(_EventMap[E]):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY: one perf ring per online CPU, opened by ``reader()``
    (or the first ``poll``).

    Events within one CPU's ring come in order; a batch lists the CPUs one after another.
    ``pages`` (a power of 2) sizes each CPU's ring. ``wakeup_bytes`` sets when the kernel
    wakes the reader: by default once a quarter of a ring is pending, so a burst costs a
    few wakeups instead of one interrupt per event (which caps the producer near 100k
    events/s); ``poll`` then also looks at the rings every ``RECHECK`` seconds, the most a
    lone event waits. ``wakeup_bytes=0`` wakes on every event (lowest latency, like bcc).
    """

    def __init__(self, spec: MapSpec, fd: int, owner: object) -> None:
        super().__init__(spec, fd, owner)
        self._options: tuple[int, int | None] = (DEFAULT_PAGES, None)

    def reader(
        self, *, pages: int = DEFAULT_PAGES, wakeup_bytes: int | None = None,
    ) -> EventReader[E]:
        """Open the map's reader: perf rings of ``pages`` data pages on every online CPU."""
        self._check_can_open()
        _perf_wakeup(self.name, pages, wakeup_bytes)
        cls = _PerfReader if reader_kind() == "mmap" else _LibbpfPerfReader
        reader: EventReader[E] = cls(self.fd, self.name, self.spec.event, pages, wakeup_bytes)
        self._options = (pages, wakeup_bytes)
        return self._adopt(reader)

    def resize(self, pages: int, wakeup_bytes: int | None = None) -> None:
        """Replace the map's reader by one with ``pages`` data pages per CPU (events not yet
        read are lost). Bad arguments change nothing; if the new rings cannot be opened,
        the previous shape is reopened and the error raised."""
        if self._closed:
            raise ValueError(f"event map {self.name!r} is closed")
        _perf_wakeup(self.name, pages, wakeup_bytes)
        before = self._options
        if self._reader is not None:
            self._reader.close()
        try:
            self.reader(pages=pages, wakeup_bytes=wakeup_bytes)
        except BaseException:
            if self._reader is None:
                self.reader(pages=before[0], wakeup_bytes=before[1])
            raise


class RingBuf(_EventMap[E]):
    """BPF_MAP_TYPE_RINGBUF: one ring shared by all CPUs, events in submission order.

    The kernel drops samples silently when the ring is full (the program's reserve/output
    call fails). ``lost`` sums the per-CPU counter map ``<name>__lost`` that the helpers of
    ``<ebpf_gen/events.bpf.h>`` keep; else it reads ``lost_counter()`` when set (e.g. a BPF
    global the program increments on failure); else 0.
    """

    lost_counter: Callable[[], int] | None = None

    def reader(self, *, linger: float = LINGER) -> EventReader[E]:
        """Open the map's reader: the ring mapped into this process (or libbpf's).

        ``linger``: seconds a batch may gather after a wakeup before it is taken (the most
        it adds to an event's latency; 0: take every batch at once, a wakeup per few events
        under a steady stream)."""
        self._check_can_open()
        if not 0 <= linger <= 1:
            raise ValueError(f"ring buffer {self.name!r}: linger must be 0..1 s, got {linger!r}")
        # max_entries may have been changed at open time: the kernel's value, not the spec's.
        size = int(libbpf.map_info(self.fd).max_entries)
        reader: EventReader[E]
        if reader_kind() == "mmap":
            reader = _RingBufReader(self.fd, self.name, self.spec.event, size, linger)
        else:
            reader = _LibbpfRingReader(self.fd, self.name, self.spec.event, size, linger)
        reader.lost_counter = lambda: self.lost
        return self._adopt(reader)

    @property
    def lost(self) -> int:
        counter = _lost_map(self.owner, self.name)
        if counter is not None:
            return sum(counter[0])
        return self.lost_counter() if self.lost_counter is not None else 0


LOST_SUFFIX = "__lost"  # <ring>__lost: the per-CPU drop counter of <ebpf_gen/events.bpf.h>


def _lost_map(owner: object, ring: str) -> Any:
    """The loaded object's ``<ring>__lost`` map handle, if the program declares one."""
    for handle in getattr(owner, "_handles", ()):
        if getattr(handle, "name", None) == ring + LOST_SUFFIX:
            return handle
    return None


# Event maps are handles, not MutableMappings: registered in the map registry all the same
# (objects build and close every map handle through it).
register_map_class(MapKind.PERF_EVENT_ARRAY, PerfEventArray)  # type: ignore[arg-type]
register_map_class(MapKind.RINGBUF, RingBuf)  # type: ignore[arg-type]
