"""Typed handles for BPF maps: dict-like access from user space through bpf() calls.

``Map`` is the base every map handle derives from (events.py adds PerfEventArray and
RingBuf); ``map_class`` finds the handle class of a MapKind from ``spec.HANDLES``.
Each handle owns preallocated key/value buffers (guarded by a lock, since ctypes drops the
GIL during the call) so a lookup costs one ctypes call plus the conversion.
"""

from __future__ import annotations

import ctypes
import errno as E
import os
from collections.abc import ItemsView, KeysView, MutableMapping, Sequence, ValuesView

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


class IterationAbortedError(RuntimeBPFError):
    """Entries kept vanishing faster than iteration could make progress."""


class Map(_MapBase):
    """Any BPF map: name, fd, spec, kind, and dict-like access where the kernel allows it."""

    # Array-like maps are indexed by a u32 whatever BTF says: a map declared with only
    # __uint(key_size, 4) still takes int keys.
    _index_keys = False

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

    if TYPE_CHECKING:

        def __setitem__(self, key: Any, value: Any) -> None: ...

    else:
        __setitem__ = update  # m[k] = v without another call layer

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
        return (v for _, v in self._mapping._iter_items())


class HashMap(Map, Generic[K, V]):
    """HASH and LRU_HASH: ``m[key] -> value``; missing keys raise KeyError."""

    if TYPE_CHECKING:  # typed views of Map's methods, without a call layer at run time

        def __getitem__(self, key: K) -> V: ...

        def __setitem__(self, key: K, value: V) -> None: ...

        def __iter__(self) -> Iterator[K]: ...

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

    def _plain_values(self) -> bool:
        return False

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
