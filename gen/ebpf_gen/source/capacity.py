"""The capacity warning: an event buffer that holds too few events of its type to be useful.

A 256 KiB ring buffer sending an 8,232-byte struct holds 31 records: a burst of 32 opens
loses events (the opensnoop port lost 57-104 of 200 with nothing saying why). This names the
numbers at generation time, where the ring's size and the record's type are both known.
"""

from __future__ import annotations

from ..btf.types import Struct, Union_
from ..model import Diagnostic, ObjectModel

# Fewer records than this in one buffer: a burst the size of a thread pool overflows it.
MIN_USEFUL_EVENTS = 64
_PAGE = 4096
# What the runtime opens per CPU unless told otherwise (ebpf_gen.runtime.events.DEFAULT_PAGES).
PERF_DEFAULT_BYTES = 64 * _PAGE
_RINGBUF_HDR = 8  # each record: an 8-byte header, the record padded to 8
_PERF_SAMPLE_HDR = 12  # perf_event_header + the u32 raw size, the whole padded to 8


def capacity_warnings(model: ObjectModel, where: str) -> tuple[Diagnostic, ...]:
    """One warning per typed ring buffer or perf buffer holding < MIN_USEFUL_EVENTS."""
    out = []
    for m in model.maps:
        if m.event_type is None or m.map_type_name not in ("RINGBUF", "PERF_EVENT_ARRAY"):
            continue
        size = model.btf.sizeof(m.event_type)
        if m.map_type_name == "RINGBUF":
            what, space, hdr = "ring", m.max_entries, _RINGBUF_HDR
            fix = "raise its max_entries"
        else:
            what, space, hdr = "perf buffer", PERF_DEFAULT_BYTES, _PERF_SAMPLE_HDR
            fix = "open its reader with more pages (reader(pages=...))"
        record = (size + hdr + 7) & ~7
        held = space // record
        if held >= MIN_USEFUL_EVENTS:
            continue
        per = " per CPU" if what == "perf buffer" else ""
        out.append(Diagnostic(
            where, 0, 0, "warning",
            f"{what} '{m.name}' holds {held} events of {_c_name(model, m.event_type)} "
            f"({size} bytes) in {space // 1024} KiB{per}: a burst of {held + 1} loses events; "
            f"{fix} or send a smaller record",
        ))
    return tuple(out)


def _c_name(model: ObjectModel, type_id: int) -> str:
    t = model.btf[type_id]
    if isinstance(t, Struct):
        return f"struct {t.name}" if t.name else "an anonymous struct"
    if isinstance(t, Union_):
        return f"union {t.name}" if t.name else "an anonymous union"
    return t.name or f"type {type_id}"
