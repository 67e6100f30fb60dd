"""Loading: ObjectSpec (what a generated module declares) -> OpenObject -> Objects.

The object bytes come from next to the generated module and are checked against the
sha256 recorded at generation, so a skeleton never drives an object it was not made for.
"""

from __future__ import annotations

import _thread
import ctypes
import errno as E
import os
import stat
import sys

from . import libbpf
from .codec import Codec
from .errors import (
    KernelRefusedError,
    LoadError,
    MissingCapabilityError,
    ObjectFileError,
    RuntimeBPFError,
    check_uint,
)
from .maps import map_class
from .programs import Program
from .spec import MapKind, MapSpec, ProgramSpec
from .variables import Section, Variable, VariablesBase

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from types import TracebackType
    from typing import Any, Generic, TypeVar

    from .attach_all import AttachAllResult
    from .links import Link
    from .maps import Map
    from .spec import ObjectFile, VariableSpec
else:  # typing costs more start-up than the whole runtime: see _generic
    from ._generic import Generic, TypeVar

T = TypeVar("T", bound="ObjectsBase")

LOG_SIZE = 1 << 20  # verifier log buffer; grown to LOG_SIZE_MAX when the kernel says ENOSPC
LOG_SIZE_MAX = 1 << 24  # the largest log older kernels accept (UINT_MAX >> 8)
LOCKDOWN = "/sys/kernel/security/lockdown"
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39

_FAILED_PROG = r"prog '([^']+)': (?:BPF program load failed|failed to load)"


class MapsBase:
    """Generated ``Maps`` classes declare one typed attribute per map."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {', '.join(sorted(vars(self)))}>"


class ProgramsBase:
    """Generated ``Programs`` classes declare one ``Program`` attribute per program.

    Iterable (in the object's order), sized, and indexable by C name: ``programs["hello"]``.
    """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {', '.join(sorted(vars(self)))}>"

    def __iter__(self) -> Iterator[Program]:
        return (p for p in vars(self).values() if isinstance(p, Program))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __getitem__(self, name: str) -> Program:
        for p in self:
            if p.name == name:
                return p
        raise KeyError(f"no program {name!r}; known: {', '.join(p.name for p in self)}")


class ObjectsBase:
    """A loaded BPF object: ``maps``, ``programs``, ``variables``; close() releases all.

    A context manager: leaving the ``with`` block (also by an exception or Ctrl-C)
    detaches every link and closes every fd.
    """

    maps: MapsBase
    programs: ProgramsBase
    variables: VariablesBase

    def __init__(self, name: str, obj: int, keep: object = None) -> None:
        self.name = name
        self._obj: int | None = obj
        self._keep = keep  # buffers libbpf may point into while the object lives
        self._links: list[Link] = []
        self._handles: list[Map] = []
        self._programs: list[Program] = []
        self._lock = _thread.allocate_lock()  # threading.Lock, without importing threading

    @property
    def closed(self) -> bool:
        return self._obj is None

    def _track_link(self, link: Link) -> None:
        with self._lock:
            self._links.append(link)

    def _untrack_link(self, link: Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.remove(link)

    @property
    def links(self) -> tuple[Link, ...]:
        return tuple(self._links)

    def attach_all(self, *, strict: bool = False) -> AttachAllResult:
        """Attach every loaded program whose section names its target (a libbpf skeleton's
        ``__attach()``); the rest are listed in the result's ``skipped`` with the method each
        needs (``strict=True`` raises instead). A failure detaches what this call attached."""
        from .attach_all import attach_all

        return attach_all(self, self._programs, strict)

    def close(self) -> None:
        """Detach all links, close maps and programs. Idempotent."""
        obj, self._obj = self._obj, None
        if obj is None:
            return
        try:
            for link in reversed(self.links):
                link.close()
            for handle in self._handles:
                try:
                    handle.close()
                finally:
                    handle.fd = -1  # a stale fd number may be reused by an unrelated file
            for program in self._programs:
                program.fd, program._ptr = -1, None
            variables = getattr(self, "variables", None)
            if variables is not None:
                variables._close()
        finally:
            libbpf.lib().bpf_object__close(obj)
            self._keep = None

    def __enter__(self: T) -> T:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_obj", None) is not None:
            # At interpreter shutdown there is nobody left to tell (and contextlib.suppress
            # would cost every skeleton the import of contextlib).
            try:  # noqa: SIM105
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {'closed' if self.closed else 'loaded'}>"


class ObjectSpec(Generic[T]):
    """What a generated module declares about its object; ``load()`` makes it live."""

    def __init__(
        self,
        *,
        name: str,
        package: str | None,
        files: Mapping[str, ObjectFile],
        maps: Sequence[MapSpec] = (),
        programs: Sequence[ProgramSpec] = (),
        variables: Sequence[VariableSpec] = (),
        objects: type[T],
        maps_class: type[MapsBase] = MapsBase,
        programs_class: type[ProgramsBase] = ProgramsBase,
        variables_class: type[VariablesBase] = VariablesBase,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.package = package
        self.files = dict(files)
        # A generated module declares them in its classes (one line each); given explicitly,
        # they win.
        self.maps = tuple(maps) or _declared(maps_class, MapSpec)
        self.programs = tuple(programs) or _declared(programs_class, ProgramSpec)
        self.variables = tuple(variables) or tuple(
            v.spec for v in vars(variables_class).values() if isinstance(v, Variable) and v.type
        )
        self.objects = objects
        self.maps_class = maps_class
        self.programs_class = programs_class
        self.variables_class = variables_class
        self.directory = directory  # read the object from here instead of the package
        self._data: bytes | None = None

    def __repr__(self) -> str:
        return f"<ObjectSpec {self.name}>"

    @property
    def file(self) -> ObjectFile:
        """The object for this machine: its byte order, and its architecture where the
        program's code depends on it (see arch.py); ArchError names the option that adds one."""
        from .arch import select

        return select(self.files, name=self.name)

    def open_pinned(self, name: str, path: str | os.PathLike[str]) -> Map:
        """The map pinned at ``path`` (by another process, or an earlier run), as this
        skeleton's handle for map ``name``, after checking its kind and key and value
        sizes; the handle owns its fd (close() it, or let it be collected)."""
        from . import pinning
        from .maps import _OwnedFd

        spec = next((m for m in self.maps if m.name == name), None)
        if spec is None:
            known = ", ".join(m.name for m in self.maps)
            raise KeyError(f"{self.name}: no map {name!r}; known: {known}")
        lib = libbpf.lib()
        with self._open(0, 4096) as opened:  # parsed, not loaded: the object's view of it
            ptr = opened._map(name)
            spec = spec.replace(kind=_kind(int(lib.bpf_map__type(ptr)), spec.kind),
                                flags=int(lib.bpf_map__map_flags(ptr)))
            sizes = (int(lib.bpf_map__key_size(ptr)), int(lib.bpf_map__value_size(ptr)))
        fd = pinning.open_fd(path, f"{self.name}: map {name!r}")
        owner = _OwnedFd(fd)
        try:
            info = pinning.check_pinned_map(spec, fd, os.fspath(path), sizes)
            handle = map_class(spec.kind)(spec.replace(max_entries=info.max_entries), fd, owner)
        except BaseException:
            owner.close()
            raise
        handle.pin_path = os.path.abspath(os.fspath(path))
        return handle

    def data(self) -> bytes:
        """The object bytes, checked against the recorded sha256 (read once)."""
        if self._data is not None:
            return self._data
        file = self.file
        try:
            where, data = self._read(file.filename)
        except OSError as e:
            raise ObjectFileError(
                f"{self.name}: cannot read {file.filename} next to the generated module: {e}; "
                "regenerate with ebpf-gen"
            ) from e
        digest = _sha256(data).hexdigest()
        if digest != file.sha256:
            raise ObjectFileError(
                f"{self.name}: {where} has sha256 {digest}, the generated module expects "
                f"{file.sha256}: the object was rebuilt without regenerating (run ebpf-gen)"
            )
        self._data = data
        return data

    def _read(self, filename: str) -> tuple[str, bytes]:
        if self.directory is not None:
            path = os.path.join(os.fspath(self.directory), filename)
        elif self.package is not None:
            module = sys.modules.get(self.package)
            if module is None:
                import importlib

                module = importlib.import_module(self.package)
            location = getattr(module, "__file__", None)
            if location is None:  # e.g. imported from a zip: ask importlib.resources
                from importlib.resources import files

                package = self.package
                parent = package if hasattr(module, "__path__") else package.rpartition(".")[0]
                res = files(parent).joinpath(filename)
                return str(res), res.read_bytes()
            path = os.path.join(os.path.dirname(location), filename)
        else:
            raise ObjectFileError(f"{self.name}: neither package nor directory given")
        return path, _read_regular(path)

    def open(
        self,
        constants: Mapping[str, object] | None = None,
        *,
        max_entries: Mapping[str, Any] | None = None,  # a generated MaxEntries TypedDict
        autoload: Mapping[str, Any] | None = None,  # a generated Autoload TypedDict
        log_level: int = 0,
        log_size: int = LOG_SIZE,
        pin_root: str | os.PathLike[str] | None = None,
        btf_path: str | os.PathLike[str] | None = None,
    ) -> OpenObject[T]:
        """Open (parse) the object and apply the settings without loading; then ``.load()``.

        ``pin_root``: the bpffs directory where maps declared ``__uint(pinning,
        LIBBPF_PIN_BY_NAME)`` are pinned by name (and reused when already there; libbpf's
        default is /sys/fs/bpf). ``btf_path``: kernel BTF to relocate CO-RE programs
        against instead of /sys/kernel/btf/vmlinux (libbpf's btf_custom_path).
        """
        opened = self._open(log_level, log_size, pin_root, btf_path)
        try:
            if constants:
                opened.set_constants(constants)
            for name, n in (max_entries or {}).items():
                opened.set_max_entries(name, n)
            for name, on in (autoload or {}).items():
                opened.set_autoload(name, on)
        except BaseException:
            opened.close()
            raise
        return opened

    def _open(self, log_level: int, log_size: int, pin_root: str | os.PathLike[str] | None = None,
              btf_path: str | os.PathLike[str] | None = None) -> OpenObject[T]:
        check_uint(f"{self.name}: log_level", log_level, 32)  # u32 fields of the opts
        check_uint(f"{self.name}: log_size", log_size, 32)
        lib = libbpf.lib()
        data = self.data()
        stem = os.path.splitext(os.path.basename(self.file.filename))[0]
        buf = ctypes.create_string_buffer(data, len(data))
        log_buf = _log_buffer(log_size)
        name = stem.encode()
        pins = os.fsencode(pin_root) if pin_root is not None else None
        btf = os.fsencode(btf_path) if btf_path is not None else None
        if pins is not None:
            from .pinning import require_bpffs

            require_bpffs(os.fsdecode(pins), f"{self.name}: pin_root")
        if btf is not None and not os.path.isfile(btf):
            raise ObjectFileError(f"{self.name}: btf_path {os.fsdecode(btf)}: no such file")
        opts = libbpf.BpfObjectOpenOpts(
            sz=ctypes.sizeof(libbpf.BpfObjectOpenOpts),
            object_name=name,
            pin_root_path=pins,
            btf_custom_path=btf,
            kernel_log_buf=ctypes.addressof(log_buf),
            kernel_log_size=len(log_buf),
            kernel_log_level=log_level,
        )
        with libbpf.capture_warnings() as warnings:
            ptr = lib.bpf_object__open_mem(buf, len(data), ctypes.byref(opts))
            err = ctypes.get_errno()
        if not ptr:
            detail = "; ".join(warnings[-3:])
            raise ObjectFileError(
                f"{self.name}: libbpf cannot open {self.file.filename}: "
                f"{os.strerror(err or E.EINVAL)}" + (f" ({detail})" if detail else "")
            )
        return OpenObject(self, ptr, keep=(buf, log_buf, name, pins, btf), log_buf=log_buf)

    def load(
        self,
        constants: Mapping[str, object] | None = None,
        *,
        max_entries: Mapping[str, Any] | None = None,  # a generated MaxEntries TypedDict
        autoload: Mapping[str, Any] | None = None,  # a generated Autoload TypedDict
        log_level: int = 0,
        pin_root: str | os.PathLike[str] | None = None,
        btf_path: str | os.PathLike[str] | None = None,
    ) -> T:
        """Open, apply the settings, load into the kernel; the Objects to use or close.
        ``pin_root`` and ``btf_path`` as for open()."""
        log_size = LOG_SIZE
        while True:
            opened = self.open(
                constants,
                max_entries=max_entries,
                autoload=autoload,
                log_level=log_level,
                log_size=log_size,
                pin_root=pin_root,
                btf_path=btf_path,
            )
            try:
                return opened.load()
            except LoadError as e:
                # A log that overflowed is worth a second verification only when the verdict
                # was lost: kernels >= 6.4 keep the log's end (with the verdict), older ones
                # its start. A runaway program takes seconds to verify: not twice for nothing.
                if e.errno != E.ENOSPC or log_size >= LOG_SIZE_MAX or verifier_verdict(e.log):
                    raise
                log_size = LOG_SIZE_MAX
            finally:
                opened.close()  # no-op once loaded: Objects took ownership


class OpenObject(Generic[T]):
    """A parsed, not yet loaded object. ``load()`` hands ownership to the returned Objects."""

    def __init__(self, spec: ObjectSpec[T], ptr: int, *, keep: object, log_buf: Any) -> None:
        self.spec = spec
        self._obj: int | None = ptr
        self._keep = keep
        self._log_buf = log_buf
        self._variables = {v.name: v for v in spec.variables}
        self._edits: dict[str, dict[str, object]] = {}  # map name -> MapSpec changes

    def _ptr(self) -> int:
        if self._obj is None:
            raise RuntimeBPFError(f"{self.spec.name}: object already loaded or closed")
        return self._obj

    def _map(self, name: str) -> int:
        ptr = libbpf.lib().bpf_object__find_map_by_name(self._ptr(), name.encode())
        if not ptr:
            known = ", ".join(m.name for m in self.spec.maps)
            raise KeyError(f"{self.spec.name}: no map {name!r}; known: {known}")
        return int(ptr)

    def set_constants(self, values: Mapping[str, object]) -> None:
        """Set initial values of globals (.rodata constants, also .data/.bss) before load."""
        lib = libbpf.lib()
        for name, value in values.items():
            spec = self._variables.get(name)
            if spec is None:
                known = ", ".join(sorted(self._variables)) or "none"
                raise KeyError(f"{self.spec.name}: no global variable {name!r}; known: {known}")
            size = ctypes.sizeof(spec.type)
            codec = Codec(spec.type, size, f"{self.spec.name}: constant {name!r}")
            buf = codec.buffer()
            codec.encode(value, buf)  # TypeError / ValueError before touching the object
            section = self._map(spec.section)
            total = ctypes.c_size_t()
            addr = lib.bpf_map__initial_value(section, ctypes.byref(total))
            if not addr or spec.offset + size > total.value:
                raise RuntimeBPFError(
                    f"{self.spec.name}: variable {name!r} at {spec.section}+{spec.offset} "
                    f"({size} bytes) is outside the section ({total.value} bytes)"
                )
            ctypes.memmove(addr + spec.offset, ctypes.addressof(buf), size)

    def set_max_entries(self, name: str, n: int) -> None:
        check_uint(f"{self.spec.name}: max_entries[{name!r}]", n, 32)
        libbpf.check(
            libbpf.lib().bpf_map__set_max_entries(self._map(name), n),
            f"{self.spec.name}: set_max_entries({name!r}, {n})",
        )

    def _edit(self, name: str, what: str, arg: int, ret: int, **spec: object) -> None:
        libbpf.check(ret, f"{self.spec.name}: {what}({name!r}, {arg})")
        self._edits.setdefault(name, {}).update(spec)

    def set_value_size(self, name: str, size: int) -> None:
        """Resize the map's values before load (libbpf-tools size stack-trace maps so:
        ``set_value_size("stackmap", 127 * 8)``); the handle then reads raw bytes, or
        the addresses of a StackTraceMap."""
        self._edit(name, "set_value_size", size, libbpf.lib().bpf_map__set_value_size(
            self._map(name), check_uint("set_value_size", size, 32)), value=None)

    def set_key_size(self, name: str, size: int) -> None:
        """Resize the map's keys before load; the handle then takes raw bytes keys."""
        self._edit(name, "set_key_size", size, libbpf.lib().bpf_map__set_key_size(
            self._map(name), check_uint("set_key_size", size, 32)), key=None)

    def set_type(self, name: str, kind: int) -> None:
        """Change the map type before load (a MapKind); the handle follows the new kind."""
        from .spec import MapKind

        try:
            new = MapKind(kind)
        except ValueError:
            raise ValueError(f"{self.spec.name}: set_type({name!r}): {kind!r} is not a "
                             "MapKind") from None
        self._edit(name, "set_type", int(new), libbpf.lib().bpf_map__set_type(
            self._map(name), int(new)), kind=new)

    def set_map_flags(self, name: str, flags: int) -> None:
        """Replace the map's BPF_F_* flags before load."""
        self._edit(name, "set_map_flags", flags, libbpf.lib().bpf_map__set_map_flags(
            self._map(name), check_uint("set_map_flags", flags, 32)), flags=flags)

    def set_autocreate(self, name: str, enabled: bool) -> None:
        """Whether libbpf creates the map at load (off: programs using it must not load,
        and the skeleton's attribute for it is None)."""
        self._edit(name, "set_autocreate", int(bool(enabled)),
                   libbpf.lib().bpf_map__set_autocreate(self._map(name), bool(enabled)))
        self._edits[name]["_autocreate"] = bool(enabled)

    def set_inner_map(self, name: str, inner: object) -> None:
        """The inner-map template of a map of maps, from a map handle or a map fd."""
        fd = _fd_arg(inner, f"{self.spec.name}: set_inner_map({name!r})")
        self._edit(name, "set_inner_map", fd,
                   libbpf.lib().bpf_map__set_inner_map_fd(self._map(name), fd))

    def reuse_fd(self, name: str, existing: object) -> None:
        """Use an existing map (a handle or an fd, e.g. of a pinned map) instead of
        creating this one at load; libbpf checks that type and sizes match."""
        fd = _fd_arg(existing, f"{self.spec.name}: reuse_fd({name!r})")
        self._edit(name, "reuse_fd", fd, libbpf.lib().bpf_map__reuse_fd(self._map(name), fd))

    def set_autoload(self, name: str, enabled: bool) -> None:
        ptr = libbpf.lib().bpf_object__find_program_by_name(self._ptr(), name.encode())
        if not ptr:
            known = ", ".join(p.name for p in self.spec.programs)
            raise KeyError(f"{self.spec.name}: no program {name!r}; known: {known}")
        libbpf.check(
            libbpf.lib().bpf_program__set_autoload(ptr, enabled),
            f"{self.spec.name}: set_autoload({name!r})",
        )

    def _program(self, name: str) -> int:
        ptr = libbpf.lib().bpf_object__find_program_by_name(self._ptr(), name.encode())
        if not ptr:
            known = ", ".join(p.name for p in self.spec.programs)
            raise KeyError(f"{self.spec.name}: no program {name!r}; known: {known}")
        return int(ptr)

    def set_attach_target(
        self, program: str, function: str, target_program: Program | int | None = None
    ) -> None:
        """Before load: attach ``program`` (fentry/fexit/fmod_ret/tp_btf/lsm/freplace) to
        kernel function ``function``, or with ``target_program`` (a loaded Program or
        fd) to that program's global function (freplace, or fentry on a BPF program)."""
        fd = 0
        if target_program is not None:
            fd = target_program.fd if isinstance(target_program, Program) else target_program
            if not isinstance(fd, int) or fd < 0:
                raise ValueError(f"target_program must be a loaded Program or fd, not {fd!r}")
        libbpf.check(
            libbpf.lib().bpf_program__set_attach_target(
                self._program(program), fd, function.encode()
            ),
            f"{self.spec.name}: set_attach_target({program!r}, {function!r})",
        )

    def set_program_type(self, program: str, prog_type: int) -> None:
        """Before load: override the program type (enum bpf_prog_type) libbpf took from
        the section."""
        libbpf.check(
            libbpf.lib().bpf_program__set_type(self._program(program), prog_type),
            f"{self.spec.name}: set_program_type({program!r}, {prog_type})",
        )

    def set_expected_attach_type(self, program: str, attach_type: int) -> None:
        """Before load: override the expected attach type (enum bpf_attach_type)."""
        libbpf.check(
            libbpf.lib().bpf_program__set_expected_attach_type(
                self._program(program), attach_type
            ),
            f"{self.spec.name}: set_expected_attach_type({program!r}, {attach_type})",
        )

    def _inner_templates(self) -> dict[str, tuple[int, int, int]]:
        """(type, max_entries, flags) of each map of maps' template: libbpf frees the
        templates once it has created the maps, so they are read before load."""
        lib = libbpf.lib()
        out: dict[str, tuple[int, int, int]] = {}
        for mspec in self.spec.maps:
            if mspec.inner is None:
                continue
            inner = lib.bpf_map__inner_map(self._map(mspec.name))
            if inner:
                out[mspec.name] = (int(lib.bpf_map__type(inner)),
                                   int(lib.bpf_map__max_entries(inner)),
                                   int(lib.bpf_map__map_flags(inner)))  # fmt: skip
        return out

    def load(self) -> T:
        obj = self._ptr()
        lib = libbpf.lib()
        _check_pin_paths(self.spec.name, obj)
        inners = self._inner_templates()
        self._log_buf[0] = b"\0"
        with libbpf.capture_warnings() as warnings:
            ret = lib.bpf_object__load(obj)
        if ret < 0:
            raise self._load_error(-ret, warnings)
        objects = self.spec.objects(self.spec.name, obj, keep=self._keep)
        self._obj = None  # ownership moves to objects, which closes it on any failure below
        try:
            _populate(objects, _edited(self.spec, self._edits), obj, inners)
        except BaseException:
            objects.close()
            raise
        return objects

    def _section_of(self, program: str | None) -> str:
        """The ELF section of ``program`` as libbpf read it ("" when unknown)."""
        if program is None or self._obj is None:
            return ""
        lib = libbpf.lib()
        ptr = lib.bpf_object__find_program_by_name(self._obj, program.encode())
        return (lib.bpf_program__section_name(ptr) or b"").decode() if ptr else ""

    def _load_error(self, err: int, warnings: list[str]) -> Exception:
        log = self._log_buf.value.decode("utf-8", "replace")
        program = _failed_program(warnings)
        what = f"{self.spec.name}: loading"
        if program:
            what += f" program {program!r}"
        if err == E.EPERM or (err == E.EACCES and not log.strip()):
            caps = _capabilities()
            if caps is not None and _enough(caps):
                # What the kernel lacks for this program type (a trampoline, the BPF LSM),
                # where that is known, follows the general "the kernel refused it".
                detail = _refused_program(self._section_of(program), err)
                return self._refused(what, err, log, program, caps, detail)
            return MissingCapabilityError(
                err, f"{what}: permission denied ({_capability_report()}): {libbpf.CAPABILITY_HINT}"
            )
        detail = "; ".join(w for w in warnings if not w.startswith("libbpf: prog '") or program)
        reason = os.strerror(err)
        verdict = verifier_verdict(log)
        if verdict:
            reason = f"rejected by the verifier: {verdict}"
            if err == E.ENOSPC:
                reason += (f" (the verifier log overflowed its {len(self._log_buf) >> 20} MiB"
                           " buffer; its end is in .log)")
        elif err == E.ENOSPC and log:
            reason = (f"the verifier log overflowed {len(self._log_buf) >> 20} MiB before the "
                      "verdict (this kernel keeps the log's start): the program is most likely "
                      "too large for the verifier (an unbounded loop?)")
        elif program and err in (E.EACCES, E.EINVAL):
            reason = f"rejected by the verifier ({reason})"
        msg = f"{what} failed: {reason}"
        if detail and not log:
            msg += f" [{detail[-500:]}]"
        return LoadError(msg, errno=err, log=log, program=program)

    def _refused(self, what: str, err: int, log: str, program: str | None,
                 caps: list[str], detail: str | None = None) -> KernelRefusedError:
        ptype = section = ""
        if program:
            lib = libbpf.lib()
            ptr = lib.bpf_object__find_program_by_name(self._ptr(), program.encode())
            if ptr:
                section = (lib.bpf_program__section_name(ptr) or b"").decode()
                to_str = getattr(lib, "libbpf_bpf_prog_type_str", None)
                if to_str is not None:
                    ptype = (to_str(lib.bpf_program__type(ptr)) or b"").decode()
        lockdown = lockdown_state()
        kind = f"{ptype} programs" if ptype else "this program"
        if section:
            kind += f" (SEC(\"{section}\"))"
        policy = (f"kernel lockdown is {lockdown!r}" if lockdown and lockdown != "none"
                  else f"lockdown: {lockdown or f'unknown, no {LOCKDOWN}'}")
        msg = (f"{what} failed: the kernel refused it (EPERM) although this process has "
               f"{', '.join(caps)}: not a missing capability, this kernel forbids {kind} "
               f"({policy}; an LSM such as SELinux, AppArmor or a BPF LSM program, or the "
               "kernel's configuration, can refuse too)")
        if detail:
            msg += f": {detail}"
        return KernelRefusedError(msg, errno=err, log=log, program=program,
                                  program_type=ptype, lockdown=lockdown)

    def close(self) -> None:
        obj, self._obj = self._obj, None
        if obj is not None:
            libbpf.lib().bpf_object__close(obj)
        self._keep = None

    def __enter__(self) -> OpenObject[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _declared(cls: type, kind: type[Any]) -> tuple[Any, ...]:
    """The specs a generated class declares as attribute values, with their attributes."""
    return tuple(v.replace(attr=attr) for attr, v in vars(cls).items() if isinstance(v, kind))


def _kind(value: int, fallback: MapKind) -> MapKind:
    try:
        return MapKind(value)
    except ValueError:  # a kind newer than this runtime: the plain Map handle
        return fallback


def _loaded_spec(lib: Any, mspec: MapSpec, ptr: int, inner: tuple[int, int, int] | None) -> MapSpec:
    """``mspec`` with what libbpf knows of the loaded map: kind, max_entries, flags."""
    changes: dict[str, object] = {
        "kind": _kind(int(lib.bpf_map__type(ptr)), mspec.kind),
        "max_entries": int(lib.bpf_map__max_entries(ptr)),
        "flags": int(lib.bpf_map__map_flags(ptr)),
    }
    if mspec.inner is not None and inner is not None:
        changes["inner"] = mspec.inner.replace(
            kind=_kind(inner[0], mspec.inner.kind), max_entries=inner[1], flags=inner[2]
        )
    if all(getattr(mspec, k) == v for k, v in changes.items()):
        return mspec
    return mspec.replace(**changes)


def _populate(
    objects: ObjectsBase,
    spec: ObjectSpec[Any],
    obj: int,
    inners: Mapping[str, tuple[int, int, int]] | None = None,
) -> None:
    lib = libbpf.lib()
    maps = spec.maps_class()
    for mspec in spec.maps:
        ptr = lib.bpf_object__find_map_by_name(obj, mspec.name.encode())
        if not ptr:
            raise RuntimeBPFError(f"{spec.name}: the object has no map {mspec.name!r}")
        # Asked of libbpf, not read from the fd: libbpf >= 1.3 gives every map a placeholder
        # fd at open, so a map left out by set_autocreate(name, False) has one too.
        if not lib.bpf_map__autocreate(ptr):
            setattr(maps, mspec.attribute, None)
            continue
        _check_sizes(
            spec.name, mspec, int(lib.bpf_map__key_size(ptr)), int(lib.bpf_map__value_size(ptr))
        )
        fd = int(lib.bpf_map__fd(ptr))
        mspec = _loaded_spec(lib, mspec, ptr, (inners or {}).get(mspec.name))
        handle = map_class(mspec.kind)(mspec, fd, objects)
        pinned = lib.bpf_map__pin_path(ptr)  # pin_root / LIBBPF_PIN_BY_NAME
        handle.pin_path = os.fsdecode(pinned) if pinned else None
        objects._handles.append(handle)
        setattr(maps, mspec.attribute, handle)
    programs = spec.programs_class()
    for pspec in spec.programs:
        ptr = lib.bpf_object__find_program_by_name(obj, pspec.name.encode())
        if not ptr:
            raise RuntimeBPFError(f"{spec.name}: the object has no program {pspec.name!r}")
        section = pspec.section or (lib.bpf_program__section_name(ptr) or b"").decode()
        program = Program(
            pspec.name, section, int(lib.bpf_program__fd(ptr)), ptr=int(ptr), owner=objects
        )
        objects._programs.append(program)
        setattr(programs, pspec.attribute, program)
    sections: dict[str, Section] = {}
    for section in sorted({v.section for v in spec.variables}):
        ptr = lib.bpf_object__find_map_by_name(obj, section.encode())
        if not ptr:
            continue  # e.g. a section the object never materialised
        sections[section] = Section(
            section,
            int(lib.bpf_map__fd(ptr)),
            int(lib.bpf_map__value_size(ptr)),
            int(lib.bpf_map__map_flags(ptr)),
            readonly=section.startswith(".rodata"),
        )
    objects.maps = maps
    objects.programs = programs
    objects.variables = spec.variables_class(spec.variables, sections)


def _check_pin_paths(name: str, obj: int) -> None:
    """Maps pinned by name go to pin_root (default /sys/fs/bpf): say clearly when that is
    not a bpffs, before libbpf fails with EINVAL."""
    lib = libbpf.lib()
    ptr = lib.bpf_object__next_map(obj, None)
    while ptr:
        path = lib.bpf_map__pin_path(ptr)
        if path:
            from .pinning import require_bpffs

            map_name = lib.bpf_map__name(ptr).decode(errors="replace")
            require_bpffs(os.path.dirname(os.fsdecode(path)),
                          f"{name}: map {map_name!r} is pinned by name (LIBBPF_PIN_BY_NAME), "
                          "but its pin root (load(pin_root=...), default /sys/fs/bpf)")
        ptr = lib.bpf_object__next_map(obj, ptr)


def _edited(spec: ObjectSpec[Any], edits: dict[str, dict[str, object]]) -> ObjectSpec[Any]:
    """``spec`` with the map changes made on the open object (a shallow copy)."""
    if not edits:
        return spec
    copy = object.__new__(type(spec))
    copy.__dict__.update(spec.__dict__)
    copy.maps = tuple(
        m.replace(**{k: v for k, v in edits[m.name].items() if not k.startswith("_")})
        if m.name in edits else m
        for m in spec.maps
    )
    return copy


def _fd_arg(value: object, what: str) -> int:
    fd = getattr(value, "fd", value)
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise TypeError(f"{what}: expected a map handle or a map fd, got {type(value).__name__}")
    if fd < 0:
        raise ValueError(f"{what}: fd {fd} is closed or invalid")
    return fd


def _refused_program(section: str, err: int) -> str | None:
    """Why the kernel refused a trampoline (fentry/fexit/fmod_ret/LSM) program: its policy,
    not a missing capability. The caller has already checked that every capability is held."""
    if err != E.EPERM or not section:
        return None
    from . import diagnose, sections

    kind = sections.kind(section)
    if kind not in sections.TRACING:
        return None
    return diagnose.tracing(kind, section.partition("/")[2], err)


def _failed_program(warnings: list[str]) -> str | None:
    """The program libbpf names in its load-failure warning (re is imported only here)."""
    import re

    pattern: re.Pattern[str] = re.compile(_FAILED_PROG)
    return next((m.group(1) for w in warnings if (m := pattern.search(w))), None)


def _check_sizes(obj: str, mspec: MapSpec, key_size: int, value_size: int) -> None:
    for what, ctype, size in (("key", mspec.key, key_size), ("value", mspec.value, value_size)):
        if ctype is not None and ctypes.sizeof(ctype) != size and size:
            raise RuntimeBPFError(
                f"{obj}: map {mspec.name!r}: {what} type {ctype.__name__} is "
                f"{ctypes.sizeof(ctype)} bytes, the object says {size}"
            )


def _read_regular(path: str) -> bytes:
    """A regular file's bytes: a FIFO or device put in the object's place must not block
    or feed load() without end (opened non-blocking, checked on the descriptor)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(E.EINVAL, "not a regular file", path)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def _sha256(data: bytes) -> Any:
    # The builtin module: hashlib would load OpenSSL, a third of a skeleton's import time.
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            from hashlib import sha256  # type: ignore[assignment,unused-ignore]
    return sha256(data)


_log_buffers = _thread._local()  # threading.local, without importing threading


def _log_buffer(size: int) -> Any:
    """A per-thread verifier log buffer, reused so that loads do not zero megabytes."""
    buf = getattr(_log_buffers, "buf", None)
    if buf is None or len(buf) != size:
        buf = ctypes.create_string_buffer(size)
        _log_buffers.buf = buf
    return buf


# The verifier's last words that name a limit, as the kernel prints them (kernel/bpf/verifier.c)
_VERDICTS = (
    "BPF program is too large",
    "The sequence of ",
    "combined stack size of ",
    "infinite loop detected",
    "back-edge from insn",
    "too many states",
    "loop detected",
)


def verifier_verdict(log: str) -> str:
    """The line of a verifier log that names the limit hit, with the count it reports."""
    import re

    tail = log[-8192:]
    for line in reversed(tail.splitlines()):
        line = line.strip()
        if any(line.startswith(v) for v in _VERDICTS):
            m = re.match(r"BPF program is too large\. Processed (\d+) insn", line)
            if m:
                limit = re.search(r"insns \(limit (\d+)\)", tail)
                return (f"BPF program is too large: the verifier gave up after {m[1]} "
                        f"instructions (its limit is {limit[1] if limit else '1000000'}); "
                        "bound the loop (a constant trip count, or bpf_loop())")
            return line
    return ""


def lockdown_state() -> str:
    """The kernel lockdown mode ("none", "integrity", "confidentiality"), or "" if unknown."""
    try:
        with open(LOCKDOWN) as f:
            text = f.read()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


def _capabilities() -> list[str] | None:
    try:
        with open("/proc/self/status") as f:
            eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return None
    return [n for n, bit in (("CAP_BPF", CAP_BPF), ("CAP_PERFMON", CAP_PERFMON),
                             ("CAP_SYS_ADMIN", CAP_SYS_ADMIN)) if eff >> bit & 1]


def _enough(caps: list[str]) -> bool:
    """Every capability loading can need: CAP_SYS_ADMIN covers all, on any kernel."""
    return "CAP_SYS_ADMIN" in caps and "CAP_BPF" in caps and "CAP_PERFMON" in caps


def _capability_report() -> str:
    have = _capabilities()
    if have is None:
        return "capabilities unknown"
    return "this process has " + (
        ", ".join(have) if have else "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN"
    )
