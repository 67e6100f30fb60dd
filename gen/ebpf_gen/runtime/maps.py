"""Typed handles for BPF maps: dict-like access from user space through bpf() calls.

``Map`` is the base every map handle derives from (events.py adds PerfEventArray and
RingBuf); ``map_class`` finds the handle class of a MapKind from ``spec.HANDLES``.
Each handle owns preallocated key/value buffers (guarded by a lock, since ctypes drops the
GIL during the call) so a lookup costs one ctypes call plus the conversion.
"""

from __future__ import annotations

import array
import ctypes
import errno as E
import os
import sys
from collections.abc import ItemsView, KeysView, MutableMapping, Sequence, ValuesView
from collections.abc import Mapping as _Mapping

from . import libbpf
from .codec import Codec
from .errors import RuntimeBPFError, check_uint
from .spec import MapKind, MapSpec, handle_for

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Generic, TypeVar

    from .spec import CType

    _MapBase = MutableMapping[Any, Any]
    _ItemsBase = ItemsView[Any, Any]
    _ValuesBase = ValuesView[Any]
else:  # typing costs more start-up than the whole runtime: see _generic
    from ._generic import Generic, TypeVar

    _MapBase, _ItemsBase, _ValuesBase = MutableMapping, ItemsView, ValuesView

K = TypeVar("K")
V = TypeVar("V")
M = TypeVar("M", bound="Map")

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
# Update flags as ready-made C u64 arguments (the hot path calls without argtypes).
_FLAGS = (ctypes.c_uint64(BPF_ANY), ctypes.c_uint64(BPF_NOEXIST), ctypes.c_uint64(BPF_EXIST))
_ANY = _FLAGS[0]

_ARRAY_KINDS = frozenset(
    {
        MapKind.ARRAY,
        MapKind.PERCPU_ARRAY,
        MapKind.PROG_ARRAY,
        MapKind.PERF_EVENT_ARRAY,
        MapKind.CGROUP_ARRAY,
    }
)
_PERCPU_KINDS = frozenset(
    {
        MapKind.PERCPU_HASH,
        MapKind.PERCPU_ARRAY,
        MapKind.LRU_PERCPU_HASH,
        MapKind.PERCPU_CGROUP_STORAGE,
    }
)


# Errors meaning "this kernel or map kind has no batch operation": EINVAL (a kernel before
# 5.6 does not know the command), ENOTSUPP (524, the map type has no batch op), EOPNOTSUPP.
_NO_BATCH = frozenset({E.EINVAL, 524, E.EOPNOTSUPP})
# memoryview/array formats for the integer ctypes codes (native sizes, like ctypes).
_ARRAY_CODES = frozenset("bBhHiIlLqQ")


def _address(buf: Any) -> int:
    if isinstance(buf, array.array):
        addr: int = buf.buffer_info()[0]
        return addr
    return ctypes.addressof(buf)


def _int_code_of(codec: Codec) -> str | None:
    code = getattr(codec.ctype, "_type_", None)
    if codec.kind == "int" and isinstance(code, str) and code in _ARRAY_CODES:
        return code
    return None


def _decode_many(codec: Codec, raw: Any, n: int, stride: int) -> list[Any]:
    """``n`` values of ``codec`` laid out ``stride`` bytes apart in ``raw``."""
    code = _int_code_of(codec)
    if code is not None and stride == codec.size:
        view: Any = memoryview(raw).cast("B")[: n * stride]
        values: list[Any] = view.cast(code).tolist()
        return values
    from_buffer, decode = codec.ctype.from_buffer, codec.decode
    return [decode(from_buffer(raw, i * stride)) for i in range(n)]


def _encode_many(codec: Codec, values: list[Any], stride: int) -> Any:
    """``values`` encoded ``stride`` bytes apart into one new buffer, each checked."""
    code = _int_code_of(codec)
    if code is not None and stride == codec.size:
        try:  # array checks type and range of every element itself, in C
            return array.array(code, values)
        except OverflowError:
            bad = next(v for v in values if not codec.lo <= v <= codec.hi)
            raise ValueError(f"{codec.what}: {bad} out of range for {codec.expected} "
                             f"[{codec.lo}, {codec.hi}]") from None
        except TypeError:
            pass  # not all ints: the per-value path below names the culprit
    buf = (ctypes.c_uint8 * (len(values) * stride))()
    from_buffer, encode = codec.ctype.from_buffer, codec.encode
    for i, v in enumerate(values):
        encode(v, from_buffer(buf, i * stride))
    return buf


class IterationAbortedError(RuntimeBPFError):
    """Entries kept vanishing faster than iteration could make progress."""


class Map(_MapBase):
    """Any BPF map: name, fd, spec, kind, and dict-like access where the kernel allows it."""

    # Array-like maps are indexed by a u32 whatever BTF says: a map declared with only
    # __uint(key_size, 4) still takes int keys.
    _index_keys = False
    # Handles whose values are plain codec values (or per-CPU lists of them) read many
    # entries per bpf() call; fd-valued and event maps do not.
    _batchable = False

    def __init__(self, spec: MapSpec, fd: int, owner: object) -> None:
        self.spec = spec
        self.name = spec.name
        self.kind = spec.kind
        self.fd = fd
        # Keeps the bpf_object (and thus fd) alive as long as this handle is reachable.
        self.owner = owner
        key, value = spec.key, spec.value
        if key is not None and value is not None:
            key_size, value_size = ctypes.sizeof(key), ctypes.sizeof(value)
            self.max_entries = spec.max_entries
        else:
            info = libbpf.map_info(fd)
            key_size, value_size = info.key_size, info.value_size
            self.max_entries = info.max_entries
        self.key_size = key_size
        self.value_size = value_size
        if key is None and key_size == 4 and self._index_keys:
            key = ctypes.c_uint32
        self._key = Codec(key, key_size, f"map {self.name!r}: key") if key_size else None
        self._value = self._value_codec(value, value_size)
        lib = libbpf.lib()
        self._lookup_fn = lib.bpf_map_lookup_elem
        self._update_fn = lib.bpf_map_update_elem
        self._delete_fn = lib.bpf_map_delete_elem
        self._next_key_fn = lib.bpf_map_get_next_key
        # Hot path: the same functions without argtypes, called with byref() of buffers
        # taken from a pool (list pop/append is atomic; ctypes drops the GIL in the call,
        # so a buffer must not be shared by two threads).
        self._raw_lookup = lib["bpf_map_lookup_elem"]
        self._raw_update = lib["bpf_map_update_elem"]
        self._raw_delete = lib["bpf_map_delete_elem"]
        self._pool: list[tuple[Any, Any, Any, Any]] = [self._new_buffers()]
        key_codec, value_codec = self._key, self._value
        self._int_key = key_codec is not None and key_codec.kind == "int"
        self._klo = key_codec.lo if self._int_key and key_codec else 0
        self._khi = key_codec.hi if self._int_key and key_codec else -1
        self._int_value = value_codec.kind == "int" and self._plain_values()
        self._vlo = value_codec.lo if self._int_value else 0
        self._vhi = value_codec.hi if self._int_value else -1
        # "batch" while the kernel takes BPF_MAP_LOOKUP_BATCH for this map, else
        # "per-key"; set it to "per-key" to force get_next_key iteration.
        self.iteration = "batch" if self._batchable and self._key is not None else "per-key"
        self.pin_path: str | None = None  # where the map is pinned, if it is
        self._batch_pool: list[tuple[int, Any, Any]] = []  # (entries, key buf, value buf)

    def _plain_values(self) -> bool:
        """Values are one codec value (False for per-CPU lists and program arrays)."""
        return True

    def _new_buffers(self) -> tuple[Any, Any, Any, Any]:
        kbuf = self._key.buffer() if self._key else ctypes.c_uint8()
        vbuf = self._new_value_buffer()
        vref = ctypes.cast(self._value_address(vbuf), ctypes.c_void_p)
        return kbuf, vbuf, ctypes.byref(kbuf), vref

    def close(self) -> None:
        """Release user-space resources of the handle. The fd belongs to the object, except
        for maps opened or created outside one (``MapOfMaps``): closed here."""
        if isinstance(self.owner, _OwnedFd):
            self.owner.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.kind.name} fd={self.fd}>"

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map at ``path`` on a bpffs: it outlives this process until unpinned,
        and ``OBJECT.open_pinned(name, path)`` opens it again."""
        from .pinning import pin_fd

        self.pin_path = pin_fd(self.fd, path, f"map {self.name!r}")

    def unpin(self) -> None:
        """Remove the map's pin (the map lives on while fds or programs hold it)."""
        if self.pin_path is None:
            raise RuntimeBPFError(f"map {self.name!r} is not pinned")
        if os.path.lexists(self.pin_path):  # else unpinned by someone else: as asked
            os.unlink(self.pin_path)
        self.pin_path = None

    # -- value representation (PerCPU handles override) --------------------------------

    def _value_codec(self, value: CType | None, size: int) -> Codec:
        return Codec(value, size, f"map {self.name!r}: value")

    def _new_value_buffer(self) -> Any:
        return self._value.buffer()

    def _value_address(self, buf: Any) -> int:
        return ctypes.addressof(buf)

    def _encode_value(self, value: object, buf: Any) -> None:
        self._value.encode(value, buf)

    def _decode_value(self, buf: Any) -> Any:
        return self._value.decode(buf)

    # -- raw operations ------------------------------------------------------------------

    def _encode_key(self, key: object, buf: Any) -> None:
        if self._key is None:
            raise TypeError(f"map {self.name!r} ({self.kind.name}) has no keys")
        self._key.encode(key, buf)

    def _fail(self, ret: int, op: str) -> Exception:
        return libbpf.error(ret, f"{op} on map {self.name!r} ({self.kind.name})")

    def __getitem__(self, key: Any) -> Any:
        pool = self._pool
        try:
            bufs = pool.pop()
        except IndexError:
            bufs = self._new_buffers()
        try:
            kbuf, vbuf, kref, vref = bufs
            if self._int_key and type(key) is int and self._klo <= key <= self._khi:
                kbuf.value = key
            else:
                self._encode_key(key, kbuf)
            ret = self._raw_lookup(self.fd, kref, vref)
            if ret == 0:
                return vbuf.value if self._int_value else self._decode_value(vbuf)
        finally:
            pool.append(bufs)
        if ret == -E.ENOENT:
            raise KeyError(key)
        raise self._fail(ret, "lookup")

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:  # type: ignore[override]
        """Create or replace an entry; flags BPF_NOEXIST (raise if present) or BPF_EXIST."""
        pool = self._pool
        try:
            bufs = pool.pop()
        except IndexError:
            bufs = self._new_buffers()
        try:
            kbuf, vbuf, kref, vref = bufs
            if self._int_key and type(key) is int and self._klo <= key <= self._khi:
                kbuf.value = key
            else:
                self._encode_key(key, kbuf)
            if self._int_value and type(value) is int and self._vlo <= value <= self._vhi:
                vbuf.value = value
            else:
                self._encode_value(value, vbuf)
            ret = self._raw_update(
                self.fd, kref, vref, _FLAGS[flags] if type(flags) is int and 0 <= flags <= 2
                else ctypes.c_uint64(check_uint(f"{self.name}: update flags", flags, 64))
            )
        finally:
            pool.append(bufs)
        if ret == 0:
            return
        if ret == -E.EEXIST and flags == BPF_NOEXIST:
            raise KeyError(f"map {self.name!r}: key {key!r} already exists (BPF_NOEXIST)")
        if ret == -E.ENOENT and flags == BPF_EXIST:
            raise KeyError(key)
        if ret == -E.E2BIG:
            if self.kind in _ARRAY_KINDS:
                raise KeyError(
                    f"map {self.name!r}: index {key!r} out of range "
                    f"(max_entries={self.max_entries})"
                )
            raise self._fail(ret, f"update (map full, max_entries={self.max_entries})")
        raise self._fail(ret, "update")

    def __setitem__(self, key: Any, value: Any) -> None:
        # update() with BPF_ANY, its flag handling left out: the hot path of m[k] = v.
        pool = self._pool
        try:
            bufs = pool.pop()
        except IndexError:
            bufs = self._new_buffers()
        try:
            kbuf, vbuf, kref, vref = bufs
            if self._int_key and type(key) is int and self._klo <= key <= self._khi:
                kbuf.value = key
            else:
                self._encode_key(key, kbuf)
            if self._int_value and type(value) is int and self._vlo <= value <= self._vhi:
                vbuf.value = value
            else:
                self._encode_value(value, vbuf)
            ret = self._raw_update(self.fd, kref, vref, _ANY)
        finally:
            pool.append(bufs)
        if ret != 0:
            self.update(key, value)  # the same call again, for update()'s error reporting

    def __delitem__(self, key: Any) -> None:
        kbuf = self._key.buffer() if self._key else ctypes.c_uint8()
        self._encode_key(key, kbuf)
        ret = self._delete_fn(self.fd, ctypes.addressof(kbuf))
        if ret == -E.ENOENT:
            raise KeyError(key)
        if ret == -E.EINVAL and self.kind in _ARRAY_KINDS and self.kind != MapKind.PROG_ARRAY:
            raise TypeError(f"map {self.name!r}: {self.kind.name} entries cannot be deleted")
        if ret < 0:
            raise self._fail(ret, "delete")

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    # -- iteration -----------------------------------------------------------------------

    def _iter_raw(self) -> Iterator[Any]:
        """Yield key buffers (fresh each time), each key at most once.

        A hash map's get_next_key starts over from the first key when the previous key was
        deleted meanwhile. Then we resume from the most recent key we walked that still
        exists (kept in a short history), skip keys already yielded, and give up with
        IterationAbortedError only if the map changes faster than we can walk it.
        """
        if self._key is None:
            return
        new_key = self._key.buffer
        probe = self._new_value_buffer()
        probe_addr = self._value_address(probe)
        seen: set[bytes] = set()
        history: list[Any] = []  # last walked keys, oldest first
        prev: Any = None
        steps, limit = 0, 8 * max(self.max_entries, 1) + 4096
        while True:
            nxt = new_key()
            ret = self._next_key_fn(
                self.fd, None if prev is None else ctypes.addressof(prev), ctypes.addressof(nxt)
            )
            if ret == -E.ENOENT:
                return
            if ret < 0:
                raise self._fail(ret, "get_next_key")
            steps += 1
            if steps > limit:
                raise IterationAbortedError(
                    f"map {self.name!r}: iteration aborted after {limit} steps: entries "
                    "change faster than they can be walked"
                )
            raw = bytes(nxt)
            if raw in seen and prev is not None:
                # Started over: resume after the latest walked key still present.
                resume = None
                while history:
                    candidate = history.pop()
                    if self._lookup_fn(self.fd, ctypes.addressof(candidate), probe_addr) == 0:
                        resume = candidate
                        break
                if resume is not None:
                    prev = resume
                    history.append(resume)
                    continue
            prev = nxt
            history.append(nxt)
            if len(history) > 16:
                del history[0]
            if raw in seen:
                continue
            seen.add(raw)
            yield nxt

    def __iter__(self) -> Iterator[Any]:
        for kbuf in self._iter_raw():
            yield self._key.decode(kbuf) if self._key else None

    def _iter_items(self) -> Iterator[tuple[Any, Any]]:
        if self.iteration == "batch":
            lists = self._batch_lists()
            if lists is not None:
                keys, values = lists  # zip: no generator frame per entry (the fast path)
                return zip(keys, values, strict=True)
        return self._iter_items_per_key()

    def _iter_values(self) -> Iterator[Any]:
        if self.iteration == "batch":
            lists = self._batch_lists()
            if lists is not None:
                return iter(lists[1])
        return (v for _, v in self._iter_items_per_key())

    def _iter_items_per_key(self) -> Iterator[tuple[Any, Any]]:
        if self._key is None:
            return
        vbuf = self._new_value_buffer()
        vaddr = self._value_address(vbuf)
        for kbuf in self._iter_raw():
            ret = self._lookup_fn(self.fd, ctypes.addressof(kbuf), vaddr)
            if ret == -E.ENOENT:  # deleted between get_next_key and lookup
                continue
            if ret < 0:
                raise self._fail(ret, "lookup")
            yield self._key.decode(kbuf), self._decode_value(vbuf)

    def __len__(self) -> int:
        return sum(1 for _ in self._iter_raw())

    # -- batch operations ----------------------------------------------------------------

    def _value_stride(self) -> int:
        """Bytes of one value in a batch buffer (per-CPU maps: every CPU's, 8-aligned)."""
        return self.value_size

    def _decode_values(self, raw: Any, n: int) -> list[Any]:
        return _decode_many(self._value, raw, n, self.value_size)

    def _encode_values(self, values: list[Any]) -> Any:
        return _encode_many(self._value, values, self.value_size)

    def _batch_lists(self, delete: bool = False) -> tuple[list[Any], list[Any]] | None:
        """Keys and values of every entry through BPF_MAP_LOOKUP(_AND_DELETE)_BATCH; None
        (and iteration set to "per-key") when the kernel has no batch operation for it."""
        if self._key is None:
            return [], []
        keys: list[Any] = []
        values: list[Any] = []
        for kraw, vraw, n in self._batch_chunks(delete):
            if keys:
                keys += _decode_many(self._key, kraw, n, self.key_size)
                values += self._decode_values(vraw, n)
            else:  # the usual single chunk: no copy
                keys = _decode_many(self._key, kraw, n, self.key_size)
                values = self._decode_values(vraw, n)
        if self.iteration != "batch":
            return None
        return keys, values

    def _batch_chunks(self, delete: bool) -> Iterator[tuple[Any, Any, int]]:
        lib = libbpf.lib()
        fn = lib.bpf_map_lookup_and_delete_batch if delete else lib.bpf_map_lookup_batch
        ksize, vstride = self.key_size, self._value_stride()
        # Big chunks: one syscall per chunk is the point; bounded to ~4 MiB per call.
        # The buffers are kept for the next call (already faulted in: a fresh megabyte
        # costs page faults every time); taken from a pool so two threads never share one.
        try:
            chunk, kbuf, vbuf = self._batch_pool.pop()
        except IndexError:
            chunk = max(1, min(self.max_entries or 1, (4 << 20) // (ksize + vstride)))
            kbuf = (ctypes.c_uint8 * (chunk * ksize))()
            vbuf = (ctypes.c_uint8 * (chunk * vstride))()
        try:
            yield from self._batch_calls(fn, delete, chunk, kbuf, vbuf)
        finally:
            self._batch_pool.append((chunk, kbuf, vbuf))

    def _batch_calls(self, fn: Any, delete: bool, chunk: int, kbuf: Any, vbuf: Any
                     ) -> Iterator[tuple[Any, Any, int]]:
        ksize, vstride = self.key_size, self._value_stride()
        # The batch token: a bucket or index for hash and array maps, at most a key's size.
        tokens = [(ctypes.c_uint8 * max(ksize, 8))() for _ in range(2)]
        count = ctypes.c_uint32()
        opts = libbpf.BpfMapBatchOpts(sz=ctypes.sizeof(libbpf.BpfMapBatchOpts))
        first = True
        while True:
            count.value = chunk
            ret = fn(self.fd, None if first else ctypes.addressof(tokens[0]),
                     ctypes.addressof(tokens[1]), ctypes.addressof(kbuf),
                     ctypes.addressof(vbuf), ctypes.addressof(count), ctypes.addressof(opts))
            n = count.value
            if ret < 0 and ret != -E.ENOENT:
                if ret == -E.ENOSPC and n == 0:  # one hash bucket holds more than a chunk
                    chunk *= 2
                    kbuf = (ctypes.c_uint8 * (chunk * ksize))()
                    vbuf = (ctypes.c_uint8 * (chunk * vstride))()
                    continue
                if first and -ret in _NO_BATCH:
                    self.iteration = "per-key"
                    return
                raise self._fail(ret, "lookup_and_delete_batch" if delete else "lookup_batch")
            if n:
                yield kbuf, vbuf, n
            if ret == -E.ENOENT:
                return
            first = False
            tokens.reverse()

    def lookup_batch(self) -> list[tuple[Any, Any]]:
        """Every entry as ``(key, value)`` pairs (``dict(...)`` of it for hashable keys;
        struct keys are ctypes objects, not hashable), read with BPF_MAP_LOOKUP_BATCH, many
        entries per call; per key where the kernel has no batch operation for the map."""
        return list(self._iter_items())

    def lookup_and_delete_batch(self) -> list[tuple[Any, Any]]:
        """Every entry as ``(key, value)`` pairs, removed from the map as it is read (hash
        maps only)."""
        if self.kind in _ARRAY_KINDS:
            raise TypeError(f"map {self.name!r}: {self.kind.name} entries cannot be deleted")
        if self.iteration == "batch":
            lists = self._batch_lists(delete=True)
            if lists is not None:
                return list(zip(*lists, strict=True))
        out: list[tuple[Any, Any]] = []
        for k, v in list(self._iter_items()):
            try:
                del self[k]
            except KeyError:  # deleted by someone else meanwhile: not ours to report
                continue
            out.append((k, v))
        return out

    def update_batch(self, items: Any, flags: int = BPF_ANY) -> None:
        """Create or replace many entries in one call: a mapping or an iterable of
        ``(key, value)`` pairs; flags as for update(). Nothing is written when an entry
        does not convert (TypeError / ValueError names it)."""
        if flags not in (BPF_ANY, BPF_NOEXIST, BPF_EXIST):
            raise ValueError(f"map {self.name!r}: update_batch flags must be BPF_ANY, "
                             f"BPF_NOEXIST or BPF_EXIST, got {flags!r}")
        if isinstance(items, _Mapping):
            keys, values = list(items), list(items.values())
        else:
            pairs = list(items)
            for pair in pairs:
                if not isinstance(pair, tuple) or len(pair) != 2:
                    raise TypeError(f"map {self.name!r}: update_batch takes a mapping or "
                                    f"(key, value) pairs, got {type(pair).__name__}")
            keys, values = [k for k, _ in pairs], [v for _, v in pairs]
        if not keys:
            return
        kraw = self._encode_keys(keys)
        vraw = self._encode_values(values)
        # The kernel's batch takes no BPF_NOEXIST/BPF_EXIST (only BPF_F_LOCK): those go
        # key by key, after every entry converted.
        if self.iteration == "batch" and flags == BPF_ANY:
            count = ctypes.c_uint32(len(keys))
            opts = libbpf.BpfMapBatchOpts(sz=ctypes.sizeof(libbpf.BpfMapBatchOpts))
            ret = libbpf.lib().bpf_map_update_batch(
                self.fd, _address(kraw), _address(vraw), ctypes.addressof(count),
                ctypes.addressof(opts))
            if ret == 0:
                return
            # 5.10 refuses batches on per-CPU arrays and LPM tries with ENOTSUPP yet reports
            # every entry as done: a refusal means none were, and writing them again key by
            # key is what BPF_ANY does anyway.
            if -ret in _NO_BATCH:
                self.iteration = "per-key"
            else:
                self._batch_error(ret, "update_batch", keys, count.value, flags)
        for k, v in zip(keys, values, strict=True):
            self.update(k, v, flags)

    def delete_batch(self, keys: Any) -> None:
        """Delete many keys in one call; a missing key raises KeyError (those before it
        are deleted, as with the kernel's batch)."""
        if self.kind in _ARRAY_KINDS:
            raise TypeError(f"map {self.name!r}: {self.kind.name} entries cannot be deleted")
        keys = list(keys)
        if not keys:
            return
        kraw = self._encode_keys(keys)
        if self.iteration == "batch":
            count = ctypes.c_uint32(len(keys))
            opts = libbpf.BpfMapBatchOpts(sz=ctypes.sizeof(libbpf.BpfMapBatchOpts))
            ret = libbpf.lib().bpf_map_delete_batch(
                self.fd, _address(kraw), ctypes.addressof(count), ctypes.addressof(opts))
            if ret == 0:
                return
            if count.value == 0 and -ret in _NO_BATCH:
                self.iteration = "per-key"
            else:
                self._batch_error(ret, "delete_batch", keys, count.value, BPF_ANY)
        for k in keys:
            del self[k]

    def _encode_keys(self, keys: list[Any]) -> Any:
        if self._key is None:
            raise TypeError(f"map {self.name!r} ({self.kind.name}) has no keys")
        return _encode_many(self._key, keys, self.key_size)

    def _batch_error(self, ret: int, op: str, keys: list[Any], done: int, flags: int) -> None:
        key = keys[done] if done < len(keys) else None
        if ret == -E.ENOENT:
            raise KeyError(key)
        if ret == -E.EEXIST and flags == BPF_NOEXIST:
            raise KeyError(f"map {self.name!r}: key {key!r} already exists (BPF_NOEXIST)")
        if ret == -E.E2BIG and self.kind in _ARRAY_KINDS:
            raise KeyError(f"map {self.name!r}: index {key!r} out of range "
                           f"(max_entries={self.max_entries})")
        raise self._fail(ret, f"{op} (after {done} of {len(keys)} entries)")

    def keys(self) -> KeysView[Any]:
        return KeysView(self)

    def items(self) -> ItemsView[Any, Any]:
        return _ItemsView(self)

    def values(self) -> ValuesView[Any]:
        return _ValuesView(self)

    def clear(self) -> None:
        if self.kind in _ARRAY_KINDS and self.kind != MapKind.PROG_ARRAY:
            zero = self._new_value_buffer()  # kept referenced: the call reads it
            key = ctypes.c_uint32()
            for i in range(self.max_entries):
                key.value = i
                ret = self._update_fn(
                    self.fd, ctypes.addressof(key), self._value_address(zero), BPF_ANY
                )
                if ret < 0:
                    raise self._fail(ret, "update")
            return
        for kbuf in list(self._iter_raw()):
            ret = self._delete_fn(self.fd, ctypes.addressof(kbuf))
            if ret < 0 and ret != -E.ENOENT:
                raise self._fail(ret, "delete")


class _ItemsView(_ItemsBase):
    _mapping: Map

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        return self._mapping._iter_items()


class _ValuesView(_ValuesBase):
    _mapping: Map

    def __iter__(self) -> Iterator[Any]:
        return self._mapping._iter_values()


class HashMap(Map, Generic[K, V]):
    """HASH and LRU_HASH: ``m[key] -> value``; missing keys raise KeyError.

    ``items()``, ``values()``, ``keys()`` and ``lookup_batch()`` read many entries per
    bpf() call where the kernel allows (``iteration == "batch"``), else key by key.
    """

    _batchable = True

    if TYPE_CHECKING:  # typed views of Map's methods, without a call layer at run time

        def __getitem__(self, key: K) -> V: ...

        def __setitem__(self, key: K, value: V) -> None: ...

        def lookup_batch(self) -> list[tuple[K, V]]: ...

        def lookup_and_delete_batch(self) -> list[tuple[K, V]]: ...

    def __iter__(self) -> Iterator[K]:
        if self.iteration == "batch":
            lists = self._batch_lists()
            if lists is not None:
                return iter(lists[0])
        return Map.__iter__(self)

    def __len__(self) -> int:
        # No bpf() command counts a hash map's entries: read them, in batches if possible.
        if self.iteration == "batch":
            lists = self._batch_lists()
            if lists is not None:
                return len(lists[0])
        return Map.__len__(self)

    def keys(self) -> KeysView[K]:
        return KeysView(self)

    def items(self) -> ItemsView[K, V]:
        return _ItemsView(self)

    def values(self) -> ValuesView[V]:
        return _ValuesView(self)


class _ArrayKeys(Generic[K]):
    """Keys of an array map: every index 0..max_entries-1, set or not, without a bpf() call.

    A mixin placed before the map class, so that its ``__len__``/``__iter__`` win.
    """

    __slots__ = ()
    _index_keys = True
    max_entries: int

    def __len__(self) -> int:
        return self.max_entries

    def __iter__(self) -> Iterator[K]:
        return iter(range(self.max_entries))  # type: ignore[arg-type]


class ArrayMap(_ArrayKeys[K], HashMap[K, V]):
    """ARRAY: keys 0..max_entries-1 always exist; ``del`` is refused, clear() zeroes."""


class PerCPUHashMap(Map, Generic[K, V]):
    """PERCPU_HASH and LRU_PERCPU_HASH: values are one V per possible CPU.

    Assign a list with one value per possible CPU, or a single value for all CPUs.
    """

    _batchable = True

    def _plain_values(self) -> bool:
        return False

    def _value_stride(self) -> int:
        return self._stride * self.ncpus

    def _decode_values(self, raw: Any, n: int) -> list[Any]:
        flat = _decode_many(self._value, raw, n * self.ncpus, self._stride)
        c = self.ncpus
        return [flat[i * c : (i + 1) * c] for i in range(n)]

    def _encode_values(self, values: list[Any]) -> Any:
        c = self.ncpus
        flat: list[Any] = []
        for value in values:
            if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
                if len(value) != c:
                    raise ValueError(
                        f"map {self.name!r}: {len(value)} values given, {c} possible CPUs"
                    )
                flat.extend(value)
            else:
                flat.extend([value] * c)
        return _encode_many(self._value, flat, self._stride)

    def _value_codec(self, value: CType | None, size: int) -> Codec:
        self.ncpus = libbpf.num_possible_cpus()
        # The kernel lays per-CPU values out 8-byte aligned.
        self._stride = (size + 7) & ~7
        return Codec(value, size, f"map {self.name!r}: value")

    def _new_value_buffer(self) -> Any:
        buf = (ctypes.c_uint8 * (self._stride * self.ncpus))()
        vtype = self._value.ctype
        views = [vtype.from_buffer(buf, i * self._stride) for i in range(self.ncpus)]
        return _PerCPUBuffer(buf, views)

    def _value_address(self, buf: Any) -> int:
        return ctypes.addressof(buf.raw)

    def _encode_value(self, value: object, buf: Any) -> None:
        views = buf.views
        if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
            if len(value) != self.ncpus:
                raise ValueError(
                    f"map {self.name!r}: {len(value)} values given, {self.ncpus} possible CPUs"
                )
            for v, view in zip(value, views, strict=True):
                self._value.encode(v, view)
        else:
            for view in views:
                self._value.encode(value, view)

    def _decode_value(self, buf: Any) -> list[Any]:
        decode = self._value.decode
        return [decode(view) for view in buf.views]

    if TYPE_CHECKING:

        def __getitem__(self, key: K) -> list[V]: ...

        def __setitem__(self, key: K, value: V | Sequence[V]) -> None: ...

        def __iter__(self) -> Iterator[K]: ...

        def lookup_batch(self) -> list[tuple[K, list[V]]]: ...

        def lookup_and_delete_batch(self) -> list[tuple[K, list[V]]]: ...

    def keys(self) -> KeysView[K]:
        return KeysView(self)

    def items(self) -> ItemsView[K, list[V]]:
        return _ItemsView(self)

    def values(self) -> ValuesView[list[V]]:
        return _ValuesView(self)


class PerCPUArrayMap(_ArrayKeys[K], PerCPUHashMap[K, V]):
    """PERCPU_ARRAY: per-CPU values, keys 0..max_entries-1."""


class _PerCPUBuffer:
    """One contiguous kernel-format buffer plus a typed view per CPU."""

    __slots__ = ("raw", "views")

    def __init__(self, raw: ctypes.Array[ctypes.c_uint8], views: list[Any]) -> None:
        self.raw = raw
        self.views = views


class _FdValues(Map):
    """Maps whose values go in as fds of other BPF objects and come out as their ids
    (program arrays, maps of maps): a u32 value written from a handle or a bare fd.
    ``len`` and iteration count filled slots only: an array walks every index."""

    _value_what = ""  # what the TypeError asks for, e.g. "a Program or a program fd"

    def _fd_of(self, value: object) -> object:
        return getattr(value, "fd", value)

    def _encode_value(self, value: object, buf: Any) -> None:
        fd = self._fd_of(value)
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(
                f"map {self.name!r}: value must be {self._value_what}, "
                f"got {type(value).__name__}"
            )
        buf.value = check_uint(f"map {self.name!r}: value fd", fd, 32)

    def _plain_values(self) -> bool:
        return False

    def _value_codec(self, value: CType | None, size: int) -> Codec:
        return Codec(ctypes.c_uint32, 4, f"map {self.name!r}: value")

    def _filled(self) -> Iterator[Any]:
        # Looked up as the raw id: decoding the value (opening a map) is not needed here.
        vbuf = ctypes.c_uint32()
        for kbuf in self._iter_raw():
            ret = self._lookup_fn(self.fd, ctypes.addressof(kbuf), ctypes.addressof(vbuf))
            if ret == -E.ENOENT:  # an empty slot, or deleted since get_next_key
                continue
            if ret < 0:
                raise self._fail(ret, "lookup")
            yield self._key.decode(kbuf) if self._key else None

    def __iter__(self) -> Iterator[Any]:
        return self._filled()

    def __len__(self) -> int:
        return sum(1 for _ in self._filled())


class ProgArray(_FdValues):
    """PROG_ARRAY: ``m[i] = program`` (a Program or a program fd); reading gives the id."""

    _index_keys = True
    _value_what = "a Program or a program fd"

    if TYPE_CHECKING:

        def __iter__(self) -> Iterator[int]: ...


class _OwnedFd:
    """The fd of a map opened or created outside any object: closed with its handle, or
    when the handle is garbage."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


class MapOfMaps(_FdValues, Generic[K, M]):
    """ARRAY_OF_MAPS / HASH_OF_MAPS: the values are maps.

    ``m[k] = inner`` stores a map handle (or a map fd) matching the ``__array(values, ...)``
    template; ``m[k]`` opens the stored map by its id, as a handle typed like the template
    that holds its own fd (closed by its ``close()`` or when it is garbage);
    ``create_inner()`` creates a new map from the template. Iteration and ``len`` count
    the filled entries only.
    """

    _value_what = "a map handle or a map fd"

    def _fd_of(self, value: object) -> object:
        return value.fd if isinstance(value, Map) else value

    def _decode_value(self, buf: Any) -> M:
        map_id = int(buf.value)
        fd = libbpf.check(libbpf.lib().bpf_map_get_fd_by_id(map_id),
                          f"map {self.name!r}: open the inner map of id {map_id}")
        return self._handle(fd)

    def _handle(self, fd: int) -> M:
        owner = _OwnedFd(fd)
        try:
            spec = self.spec.inner
            if spec is None:  # no template in BTF: an untyped handle of the map's own kind
                info = libbpf.map_info(fd)
                spec = MapSpec(info.name.decode(errors="replace") or f"{self.name}.inner",
                               MapKind(info.type))
            handle: M = map_class(spec.kind)(spec, fd, owner)  # type: ignore[assignment]
            return handle
        except BaseException:
            owner.close()
            raise

    def create_inner(self, max_entries: int | None = None) -> M:
        """A new map made from the template (``max_entries`` may differ from it only when
        the template has BPF_F_INNER_MAP), not yet stored anywhere."""
        spec = self.spec.inner
        if spec is None or spec.key is None or spec.value is None:
            raise TypeError(
                f"map {self.name!r}: BTF gives no __array(values, ...) template with key and "
                "value types to create inner maps from"
            )
        key_size, value_size = ctypes.sizeof(spec.key), ctypes.sizeof(spec.value)
        if max_entries is not None:
            check_uint(f"map {self.name!r}: create_inner max_entries", max_entries, 32)
            spec = spec.replace(max_entries=max_entries)
        opts = libbpf.BpfMapCreateOpts(sz=ctypes.sizeof(libbpf.BpfMapCreateOpts),
                                       map_flags=spec.flags)
        fd = libbpf.check(
            libbpf.lib().bpf_map_create(
                int(spec.kind), spec.name.encode()[:15], key_size, value_size,
                spec.max_entries, ctypes.byref(opts),
            ),
            f"map {self.name!r}: create an inner map ({spec.kind.name}, "
            f"max_entries={spec.max_entries})",
        )
        return self._handle(fd)

    if TYPE_CHECKING:

        def __iter__(self) -> Iterator[K]: ...

        def __getitem__(self, key: K) -> M: ...

        def __setitem__(self, key: K, value: Map | int) -> None: ...

    def keys(self) -> KeysView[K]:
        return KeysView(self)

    def items(self) -> ItemsView[K, M]:
        return _ItemsView(self)

    def values(self) -> ValuesView[M]:
        return _ValuesView(self)


# -- kinds without plain key -> value semantics ------------------------------------------

BPF_F_STACK_BUILD_ID = 1 << 5
BPF_STACK_BUILD_ID_VALID, BPF_STACK_BUILD_ID_IP = 1, 2


class BuildIdFrame:
    """One frame of a BPF_F_STACK_BUILD_ID stack: ``build_id`` (bytes) and ``offset``
    into that file when ``status`` is valid, else the raw ``ip``."""

    __slots__ = ("build_id", "ip", "offset", "status")

    def __init__(self, status: int, build_id: bytes, value: int) -> None:
        self.status = status
        self.build_id = build_id if status == BPF_STACK_BUILD_ID_VALID else b""
        self.offset = value if status == BPF_STACK_BUILD_ID_VALID else None
        self.ip = value if status == BPF_STACK_BUILD_ID_IP else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BuildIdFrame) and (self.status, self.build_id, self.offset,
                                                    self.ip) == (other.status, other.build_id,
                                                                 other.offset, other.ip)

    def __hash__(self) -> int:
        return hash((self.status, self.build_id, self.offset, self.ip))

    def __repr__(self) -> str:
        if self.offset is not None:
            return f"BuildIdFrame({self.build_id.hex()}+{self.offset:#x})"
        return f"BuildIdFrame(ip={self.ip!r})"


class StackTraceMap(Map):
    """STACK_TRACE: ``stacks[stack_id]`` -> tuple of int addresses, innermost first, the
    zero padding trimmed (tuples of BuildIdFrame with BPF_F_STACK_BUILD_ID). The id is
    what bpf_get_stackid() returned; a negative id is the helper's error, not a stack.
    ``ebpf_gen.runtime.symbols`` turns addresses into names."""

    _index_keys = True  # key: the u32 stack id, whatever BTF gives
    # No kernel has batch operations for stack maps (yet): tried once, then per key.
    _batchable = True

    def _decode_values(self, raw: Any, n: int) -> list[Any]:
        size = self.value_size
        return [self._decode_value(memoryview(raw)[i * size : (i + 1) * size])
                for i in range(n)]

    def _value_codec(self, value: CType | None, size: int) -> Codec:
        self.build_id = bool(self.spec.flags & BPF_F_STACK_BUILD_ID)
        return Codec(None, size, f"map {self.name!r}: value")

    def _plain_values(self) -> bool:
        return False

    def _decode_value(self, buf: Any) -> tuple[Any, ...]:
        raw = bytes(buf)
        if self.build_id:
            frames = []
            for off in range(0, len(raw) - 31, 32):
                status = int.from_bytes(raw[off : off + 4], sys.byteorder, signed=True)
                if status == 0:  # BPF_STACK_BUILD_ID_EMPTY: the end of the stack
                    break
                value = int.from_bytes(raw[off + 24 : off + 32], sys.byteorder)
                frames.append(BuildIdFrame(status, raw[off + 4 : off + 24], value))
            return tuple(frames)
        n = len(raw) // 8
        addrs = memoryview(raw)[: n * 8].cast("Q").tolist()
        while addrs and addrs[-1] == 0:
            addrs.pop()
        return tuple(addrs)

    def __getitem__(self, stack_id: int) -> tuple[Any, ...]:
        if isinstance(stack_id, int) and not isinstance(stack_id, bool) and stack_id < 0:
            raise KeyError(f"map {self.name!r}: stack id {stack_id} is bpf_get_stackid()'s "
                           f"error {-stack_id} ({E.errorcode.get(-stack_id, '?')}), not a stack")
        result: tuple[Any, ...] = Map.__getitem__(self, stack_id)
        return result

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError(f"map {self.name!r}: stack traces are written by bpf_get_stackid()")

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:  # type: ignore[override]
        raise TypeError(f"map {self.name!r}: stack traces are written by bpf_get_stackid()")

    if TYPE_CHECKING:

        def __iter__(self) -> Iterator[int]: ...

        def items(self) -> ItemsView[int, tuple[Any, ...]]: ...


class _Keyless(Map, Generic[V]):
    """Maps without keys (queue, stack, bloom filter): the value goes in the value slot
    and the key pointer is NULL."""

    def _op(self, fn: Any, value: Any, flags: int | None, op: str) -> int:
        vbuf = self._new_value_buffer()
        if value is not _NONE:
            self._encode_value(value, vbuf)
        if flags is None:
            ret: int = fn(self.fd, None, ctypes.addressof(vbuf))
        else:
            ret = fn(self.fd, None, ctypes.addressof(vbuf), flags)
        self._last = vbuf
        if ret < 0 and ret != -E.ENOENT:
            raise self._fail(ret, op)
        return ret

    def _no_keys(self, *args: object) -> Any:
        raise TypeError(f"map {self.name!r} ({self.kind.name}) has no keys: "
                        f"use {self._methods}")

    _methods = ""
    __getitem__ = __delitem__ = _no_keys

    def __setitem__(self, key: Any, value: Any) -> None:
        self._no_keys()

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:  # type: ignore[override]
        self._no_keys()

    def __iter__(self) -> Iterator[Any]:
        return self._no_keys()  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return self._no_keys()  # type: ignore[no-any-return]

    def __contains__(self, value: object) -> bool:
        return self._no_keys()  # type: ignore[no-any-return]


_NONE = object()


class Queue(_Keyless[V]):
    """QUEUE (FIFO) and, as ``Stack``, STACK (LIFO): push/pop/peek; ``pop()`` and
    ``peek()`` of an empty one raise IndexError, as list.pop() does."""

    _methods = "push(value), pop(), peek(), drain()"

    def push(self, value: V, overwrite: bool = False) -> None:
        """Add ``value``; when full raise OverflowError, or with ``overwrite`` drop the
        oldest element to make room (BPF_EXIST)."""
        ret = self._op(self._update_fn, value, BPF_EXIST if overwrite else BPF_ANY, "push")
        if ret == -E.ENOENT:  # pragma: no cover - the kernel says E2BIG when full
            raise self._fail(ret, "push")

    def _take(self, fn: Any, op: str) -> V:
        if self._op(fn, _NONE, None, op) == -E.ENOENT:
            raise IndexError(f"{op} from empty {self.kind.name.lower()} {self.name!r}")
        result: V = self._decode_value(self._last)
        return result

    def pop(self) -> V:  # type: ignore[override]
        return self._take(self._lookup_and_delete, "pop")

    def peek(self) -> V:
        return self._take(self._lookup_fn, "peek")

    def drain(self) -> Iterator[V]:
        """Pop until empty."""
        while True:
            try:
                yield self.pop()
            except IndexError:
                return

    def _fail(self, ret: int, op: str) -> Exception:
        if ret == -E.E2BIG:
            return OverflowError(f"map {self.name!r}: {self.kind.name} is full "
                                 f"(max_entries={self.max_entries}); push(..., overwrite=True) "
                                 "drops the oldest")
        return Map._fail(self, ret, op)

    @property
    def _lookup_and_delete(self) -> Any:
        return libbpf.lib().bpf_map_lookup_and_delete_elem


class Stack(Queue[V]):
    """STACK: like Queue, last in first out."""


class BloomFilter(_Keyless[V]):
    """BLOOM_FILTER: ``add(value)``; ``value in bf`` is False only for values never added
    (and True, rarely, for some that were not: that is a bloom filter)."""

    _methods = "add(value) and `value in filter`"

    def add(self, value: V) -> None:
        self._op(self._update_fn, value, BPF_ANY, "add")

    def __contains__(self, value: object) -> bool:
        return self._op(self._lookup_fn, value, None, "lookup") == 0


class LpmTrieMap(HashMap[K, V]):
    """LPM_TRIE: keys are a u32 prefix length followed by the address bytes;
    ``m.key("10.0.0.0/8")`` or ``m.key(8, b"\\x0a")`` builds one."""

    def key(self, prefix: str | int, data: bytes | int | None = None) -> Any:
        """A key for a prefix: an "addr/len" string (IPv4 or IPv6), or a prefix length
        and the data bytes (big-endian, zero-padded on the right)."""
        size = self.key_size - 4
        if isinstance(prefix, str):
            if data is not None:
                raise TypeError(f"map {self.name!r}: key('addr/len') takes no data")
            import ipaddress  # only tries that take addresses need it

            try:
                net = ipaddress.ip_network(prefix, strict=False)
            except ValueError as e:
                raise ValueError(f"map {self.name!r}: {e}") from None
            plen, raw = net.prefixlen, net.network_address.packed
        else:
            if not isinstance(prefix, int) or isinstance(prefix, bool):
                raise TypeError(f"map {self.name!r}: prefix must be int or 'addr/len'")
            plen = prefix
            if isinstance(data, int) and not isinstance(data, bool):
                if data < 0 or data.bit_length() > 8 * size:
                    raise ValueError(f"map {self.name!r}: data {data} does not fit "
                                     f"{size} bytes")
                raw = data.to_bytes(size, "big")
            elif isinstance(data, (bytes, bytearray)):
                raw = bytes(data)
            else:
                raise TypeError(f"map {self.name!r}: data must be bytes or int")
        if len(raw) > size:
            raise ValueError(f"map {self.name!r}: {len(raw)} data bytes do not fit {size}")
        if not 0 <= plen <= 8 * size:
            raise ValueError(f"map {self.name!r}: prefix length {plen} out of range "
                             f"[0, {8 * size}]")
        blob = plen.to_bytes(4, sys.byteorder) + raw.ljust(size, b"\0")
        if self._key is not None and self._key.kind == "object":
            return self._key.ctype.from_buffer_copy(blob)
        return blob


class LocalStorage(Map, Generic[V]):
    """TASK_STORAGE, INODE_STORAGE, SK_STORAGE, CGRP_STORAGE: the value BPF keeps for a
    task, file, socket or cgroup, looked up by an fd of it (a pidfd, an open file, a
    socket, a cgroup directory; any object with fileno()). ``for_pid(pid)`` opens the
    pidfd of a task. These maps cannot be iterated."""

    def _encode_key(self, key: object, buf: Any) -> None:
        fd = key.fileno() if hasattr(key, "fileno") else key
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(f"map {self.name!r}: key must be an fd or have fileno(), "
                            f"got {type(key).__name__}")
        if not 0 <= fd <= 0x7FFFFFFF:
            raise ValueError(f"map {self.name!r}: fd {fd} out of range")
        ctypes.memmove(ctypes.addressof(buf), ctypes.byref(ctypes.c_int(fd)), 4)

    def _fail(self, ret: int, op: str) -> Exception:
        if ret == -E.EBADF:
            return ValueError(f"map {self.name!r}: {op}: the fd is not open or is not "
                              f"the kind of object a {self.kind.name} map is keyed by")
        return Map._fail(self, ret, op)

    def for_pid(self, pid: int) -> _PidFd:
        """A pidfd of task ``pid`` to use as a key: ``with m.for_pid(pid) as t: m[t]``."""
        return _PidFd(os.pidfd_open(pid))

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"map {self.name!r}: {self.kind.name} maps cannot be iterated")

    def __len__(self) -> int:
        raise TypeError(f"map {self.name!r}: {self.kind.name} maps have no length")

    if TYPE_CHECKING:

        def __getitem__(self, key: Any) -> V: ...

        def __setitem__(self, key: Any, value: V) -> None: ...


class _PidFd:
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> _PidFd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


_registry: dict[MapKind, type[Map]] = {}  # filled from spec.HANDLES on first use


def register_map_class(kind: MapKind, cls: type[Map]) -> None:
    """Use ``cls`` for maps of ``kind`` instead of the class spec.HANDLES names."""
    _registry[kind] = cls


def map_class(kind: MapKind) -> type[Map]:
    """The handle class for ``kind``, as ``spec.HANDLES`` names it (else the plain Map).

    The class's module is imported here, on first use: events pulls in asyncio, which only
    objects with event maps should pay for.
    """
    cls = _registry.get(kind)
    if cls is None:
        handle = handle_for(kind)
        module = __import__(f"{__package__}.{handle.module}", fromlist=[handle.name])
        cls = _registry.setdefault(kind, getattr(module, handle.name))
    return cls
