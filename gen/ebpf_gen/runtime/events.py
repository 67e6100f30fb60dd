"""Event buffers: ``PerfEventArray[E]`` and ``RingBuf[E]``, read in batches.

libbpf's perf_buffer/ring_buffer call back into Python once per record, which caps the
drain rate far below what a BPF program can emit. Here the rings are mapped directly and
parsed in Python in one pass per wakeup: perf rings are copied out in bulk (one or two
``string_at`` copies) and ``data_tail`` is released before decoding, so the kernel gets
the space back as early as possible; ring buffer records are decoded in place (the data
pages are mapped twice, so a record never wraps) and ``consumer_pos`` advances once per
pass. Every event is a copy (``E.from_buffer_copy``), never a view into the ring.

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
back into Python once per record: correct, and as slow as bcc. ``EBPF_GEN_EVENT_READER``
(``mmap`` or ``libbpf``) overrides the choice; the tests run both on x86.

``lost`` counts samples the kernel dropped because a perf ring was full (PERF_RECORD_LOST
records, counted as they are read). A BPF ring buffer has no such report: when it is full
``bpf_ringbuf_output``/``bpf_ringbuf_reserve`` fail in the program and the sample is gone;
``RingBuf.lost`` stays 0 unless the program counts its failures in a variable the reader
points ``lost_counter`` at.
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

from . import libbpf
from .maps import Map, register_map_class
from .spec import MapKind

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Callable, Iterator
    from typing import Any, Generic, TypeVar

    from .spec import MapSpec
else:  # skeletons with event maps import this module: keep typing (and asyncio) out of it
    from ._generic import Generic, TypeVar

E = TypeVar("E")

PAGE_SIZE = mmap.PAGESIZE
RECHECK = 0.01  # seconds a lone perf event may wait when wakeups come by watermark
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

# Header of a PERF_RECORD_SAMPLE with only PERF_SAMPLE_RAW: type, misc, size, raw size.
_SAMPLE_HDR = struct.Struct("<IHHI")
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


class _Decoder:
    """Copies records of one event type (``bytes`` when None) out of a buffer."""

    def __init__(self, event: type[Any] | None) -> None:
        self.event = event
        self.size = ctypes.sizeof(event) if event is not None else 0
        self._copy: Callable[..., Any] | None = (
            event.from_buffer_copy if event is not None else None
        )

    def one(self, buf: Any, off: int, size: int) -> Any:
        copy = self._copy
        if copy is None:
            return bytes(buf[off : off + size])
        if size >= self.size:
            return copy(buf, off)
        return copy(bytes(buf[off : off + size]).ljust(self.size, b"\0"))

    def run(self, buf: Any, start: int, count: int, stride: int, size: int) -> list[Any]:
        """``count`` records of ``size`` bytes, ``stride`` apart from ``start``."""
        copy = self._copy
        stop = start + count * stride
        if copy is None:
            return [bytes(buf[o : o + size]) for o in range(start, stop, stride)]
        if size >= self.size:
            return [copy(buf, o) for o in range(start, stop, stride)]
        return [self.one(buf, o, size) for o in range(start, stop, stride)]


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
        self.data = self.base + PAGE_SIZE
        self.size = PAGE_SIZE * pages
        self.head = ctypes.c_uint64.from_address(self.base + _DATA_HEAD)
        self.tail_ptr = ctypes.c_uint64.from_address(self.base + _DATA_TAIL)
        self.tail = self.tail_ptr.value

    def enable(self) -> None:
        fcntl.ioctl(self.fd, _PERF_EVENT_IOC_ENABLE, 0)

    def take(self) -> bytes:
        """Copy out everything between data_tail and data_head and release it to the kernel."""
        head = self.head.value
        tail = self.tail
        if head == tail:
            return b""
        start = tail & (self.size - 1)
        n = head - tail
        if start + n <= self.size:
            blob = ctypes.string_at(self.data + start, n)
        else:
            first = self.size - start
            blob = ctypes.string_at(self.data + start, first) + ctypes.string_at(
                self.data, n - first
            )
        self.tail_ptr.value = self.tail = head
        return blob

    def close(self) -> None:
        if self.fd >= 0:
            _munmap(self.base, self.length)
            os.close(self.fd)
            self.fd = -1


class _Reader:
    """What both buffer kinds share: an epoll set, poll/events/async iteration, close."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._loops: set[asyncio.AbstractEventLoop] = set()
        self.lost = 0
        self.short = 0
        # With watermark wakeups a lone event raises no wakeup: look at the rings this often.
        self.recheck: float | None = None

    def drain(self) -> list[Any]:
        raise NotImplementedError

    def poll(self, timeout: float) -> list[Any]:
        out = self.drain()
        if out or timeout <= 0:
            return out
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if self.recheck is not None:
                remaining = min(remaining, self.recheck)
            # epoll_wait takes milliseconds; rounding up keeps the wait from ending early.
            self._epoll.poll(max(remaining, 0.001))
            out = self.drain()
            if out:
                return out

    def events(self, timeout: float | None) -> Iterator[Any]:
        while True:
            batch = self.poll(86400.0 if timeout is None else timeout)
            if not batch and timeout is not None:
                return
            yield from batch

    async def aiter(self) -> AsyncIterator[Any]:
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

    def close(self) -> None:
        for loop in list(self._loops):
            self._forget_loop(loop)
        self._epoll.close()


def _perf_wakeup(name: str, pages: int, wakeup_bytes: int | None) -> int:
    if pages <= 0 or pages & (pages - 1):
        raise ValueError(f"perf map {name!r}: pages must be a power of 2, got {pages}")
    return pages * PAGE_SIZE // 4 if wakeup_bytes is None else wakeup_bytes


def _forget_perf_event(map_fd: int, cpu: int) -> None:
    """Drop the perf map's own reference to ``cpu``'s perf event, so that the event goes
    with the reader that opened it."""
    key = ctypes.c_int(cpu)
    libbpf.lib().bpf_map_delete_elem(map_fd, ctypes.byref(key))


class _PerfReader(_Reader):
    def __init__(
        self, map_fd: int, name: str, event: type[Any] | None, pages: int,
        wakeup_bytes: int | None,
    ) -> None:
        wakeup_bytes = _perf_wakeup(name, pages, wakeup_bytes)
        super().__init__()
        self._map_fd = map_fd
        self._decoder = _Decoder(event)
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

    def drain(self) -> list[Any]:
        out: list[Any] = []
        for ring in self._rings:
            blob = ring.take()
            if blob:
                self._parse(blob, out)
        return out

    def _parse(self, blob: bytes, out: list[Any]) -> None:
        decoder = self._decoder
        unpack = _SAMPLE_HDR.unpack_from
        words = memoryview(blob).cast("Q")  # records are 8-byte aligned, sizes too
        off, end = 0, len(blob)
        while off < end:
            rtype, _, size, raw = unpack(blob, off)
            if size == 0:  # a corrupt header would loop forever: drop the rest
                return
            if rtype == _PERF_RECORD_SAMPLE:
                count = _same_prefix(words, off // 8, size // 8, (end - off) // size)
                if raw < decoder.size:
                    self.short += count
                out.extend(decoder.run(blob, off + 12, count, size, raw))
                off += count * size
                continue
            if rtype == _PERF_RECORD_LOST:
                # struct { header; u64 id; u64 lost; }
                self.lost += _U64.unpack_from(blob, off + 16)[0]
            off += size

    def close(self) -> None:
        for ring in self._rings:
            _forget_perf_event(self._map_fd, ring.cpu)
            ring.close()
        self._rings.clear()
        super().close()


class _RingBufReader(_Reader):
    def __init__(self, map_fd: int, name: str, event: type[Any] | None, size: int) -> None:
        super().__init__()
        self._decoder = _Decoder(event)
        self._size = size
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

    def drain(self) -> list[Any]:
        out: list[Any] = []
        if not self._prod_base:
            return out
        decoder = self._decoder
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
            count = _same_prefix(words, off // 4, stride // 4, (prod - cons) // stride)
            if length < decoder.size:
                self.short += count
            out.extend(decoder.run(data, off + _RINGBUF_HDR, count, stride, length))
            cons += count * stride
        if cons != self._cons:
            self._cons_ptr.value = self._cons = cons
        return out

    def close(self) -> None:
        if self._prod_base:
            _munmap(self._prod_base, self._prod_len)
            self._prod_base = 0
        if self._cons_base:
            _munmap(self._cons_base, self._cons_len)
            self._cons_base = 0
        super().close()


class _LibbpfReader(_Reader):
    """What libbpf's two readers share: a handle whose epoll fd joins ours, consumed into a
    batch by one Python callback per record. Subclasses name the libbpf functions."""

    _consume = _epoll_fd = _free = ""

    def __init__(self, event: type[Any] | None, open_handle: Callable[[], int | None],
                 what: str) -> None:
        super().__init__()
        self._decoder = _Decoder(event)
        self._batch: list[Any] = []
        self._handle: int | None = None
        try:
            self._handle = libbpf.check_ptr(open_handle(), what)
            fd = getattr(libbpf.lib(), self._epoll_fd)(self._handle)
            self._epoll.register(fd, select.EPOLLIN)
        except BaseException:
            self.close()
            raise

    def _keep(self, data: int, size: int) -> None:
        if size < self._decoder.size:
            self.short += 1
        self._batch.append(self._decoder.one(ctypes.string_at(data, size), 0, size))

    def drain(self) -> list[Any]:
        if self._handle is None:
            return []
        libbpf.check(getattr(libbpf.lib(), self._consume)(self._handle), self._consume)
        out, self._batch = self._batch, []
        return out

    def close(self) -> None:
        if self._handle is not None:
            getattr(libbpf.lib(), self._free)(self._handle)
            self._handle = None
        super().close()


class _LibbpfPerfReader(_LibbpfReader):
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
        self._callback = _PERF_EVENT_FN(self._record)  # held: libbpf keeps the pointer
        super().__init__(event, lambda: libbpf.lib().perf_buffer__new_raw(
            map_fd, pages, ctypes.byref(self._attr),
            ctypes.cast(self._callback, ctypes.c_void_p), None, None,
        ), f"perf map {name!r}: perf_buffer__new_raw")
        self.recheck = RECHECK if wakeup_bytes else None

    def _record(self, _ctx: Any, _cpu: int, header: int) -> int:
        rtype = ctypes.c_uint32.from_address(header).value
        if rtype == _PERF_RECORD_SAMPLE:  # header (8 bytes), u32 raw size, raw data
            self._keep(header + 12, ctypes.c_uint32.from_address(header + 8).value)
        elif rtype == _PERF_RECORD_LOST:  # header, u64 id, u64 lost
            self.lost += ctypes.c_uint64.from_address(header + 16).value
        return _LIBBPF_PERF_EVENT_CONT

    def close(self) -> None:
        opened = self._handle is not None
        super().close()
        if opened:  # libbpf closed its perf events; the map still holds them
            for cpu in online_cpus():
                _forget_perf_event(self._map_fd, cpu)


class _LibbpfRingReader(_LibbpfReader):
    """libbpf's ring_buffer."""

    _consume, _epoll_fd, _free = (
        "ring_buffer__consume", "ring_buffer__epoll_fd", "ring_buffer__free")

    def __init__(self, map_fd: int, name: str, event: type[Any] | None) -> None:
        self._callback = _RING_SAMPLE_FN(self._record)  # held: libbpf keeps the pointer
        super().__init__(event, lambda: libbpf.lib().ring_buffer__new(
            map_fd, ctypes.cast(self._callback, ctypes.c_void_p), None, None,
        ), f"ring buffer {name!r}: ring_buffer__new")

    def _record(self, _ctx: Any, data: int, size: int) -> int:
        self._keep(data, size)
        return 0


def _perf_reader(
    map_fd: int, name: str, event: type[Any] | None, pages: int, wakeup_bytes: int | None,
) -> _Reader:
    cls = _PerfReader if reader_kind() == "mmap" else _LibbpfPerfReader
    return cls(map_fd, name, event, pages, wakeup_bytes)


class _EventMap(Map, Generic[E]):
    """Shared surface of the two event maps; the reader is opened with the map."""

    _reader: _Reader | None

    def poll(self, timeout: float) -> list[E]:
        """Wait up to ``timeout`` seconds for the first event, then return all that are ready."""
        return list(self._open_reader().poll(timeout))

    def events(self, timeout: float | None = None) -> Iterator[E]:
        """Events as they come; ends after ``timeout`` seconds without one (None: never)."""
        return iter(self._open_reader().events(timeout))

    def __aiter__(self) -> AsyncIterator[E]:
        return self._open_reader().aiter()

    @property
    def lost(self) -> int:
        """Samples the kernel reported dropped so far (see the module docstring)."""
        return self._reader.lost if self._reader is not None else 0

    @property
    def short(self) -> int:
        """Records shorter than the event type, zero-padded."""
        return self._reader.short if self._reader is not None else 0

    def _open_reader(self) -> _Reader:
        if self._reader is None:
            raise ValueError(f"event map {self.spec.name!r} is closed")
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        super().close()


class PerfEventArray(_EventMap[E]):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY: one perf ring per online CPU, opened with the map.

    Events within one CPU's ring come in order; a batch lists the CPUs one after another.
    ``pages`` (a power of 2) sizes each CPU's ring. ``wakeup_bytes`` sets when the kernel
    wakes the reader: by default once a quarter of a ring is pending, so a burst costs a
    few wakeups instead of one interrupt per event (which caps the producer near 100k
    events/s); ``poll`` then also looks at the rings every ``RECHECK`` seconds, the most a
    lone event waits. ``wakeup_bytes=0`` wakes on every event (lowest latency, like bcc).
    """

    def __init__(
        self, spec: MapSpec, fd: int, owner: object, *, pages: int = DEFAULT_PAGES,
        wakeup_bytes: int | None = None,
    ) -> None:
        super().__init__(spec, fd, owner)
        self._reader = None
        self._reader = _perf_reader(fd, spec.name, spec.event, pages, wakeup_bytes)

    def resize(self, pages: int, wakeup_bytes: int | None = None) -> None:
        """Reopen the rings with ``pages`` data pages per CPU (events not yet read are lost)."""
        reader = self._open_reader()
        reader.close()
        self._reader = None
        self._reader = _perf_reader(self.fd, self.spec.name, self.spec.event, pages,
                                    wakeup_bytes)


class RingBuf(_EventMap[E]):
    """BPF_MAP_TYPE_RINGBUF: one ring shared by all CPUs, events in submission order.

    The kernel drops samples silently when the ring is full (the program's reserve/output
    call fails): ``lost`` reads ``lost_counter()`` when set (e.g. a BPF global the program
    increments on failure), else 0.
    """

    lost_counter: Callable[[], int] | None = None

    def __init__(self, spec: MapSpec, fd: int, owner: object) -> None:
        super().__init__(spec, fd, owner)
        self._reader = None
        # max_entries may have been changed at open time: the kernel's value, not the spec's.
        size = int(libbpf.map_info(fd).max_entries)
        if reader_kind() == "mmap":
            self._reader = _RingBufReader(fd, spec.name, spec.event, size)
        else:
            self._reader = _LibbpfRingReader(fd, spec.name, spec.event)

    @property
    def lost(self) -> int:
        return self.lost_counter() if self.lost_counter is not None else 0


register_map_class(MapKind.PERF_EVENT_ARRAY, PerfEventArray)
register_map_class(MapKind.RINGBUF, RingBuf)
