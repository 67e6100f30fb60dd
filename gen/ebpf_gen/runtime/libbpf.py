"""The system libbpf.so.1, loaded once through ctypes, with prototypes declared.

Also routes libbpf's own messages (libbpf_set_print) to the ``ebpf_gen.libbpf`` logger
(libbpf's warnings at WARNING, info at INFO, debug at DEBUG) and turns negative return codes
into exceptions. Nothing is printed until the app configures logging (``logging.basicConfig()``
or a handler on that logger), as for any library's logger; errors quote libbpf's warnings.

logging is imported only once a message needs it (a warning, or any message while logging
is already in use): importing it up front would cost every skeleton a few milliseconds of
start-up for messages nobody reads.
"""

from __future__ import annotations

import _thread
import ctypes
import functools
import os
import sys

from .errors import LibbpfError, LibbpfUnavailableError, MissingCapabilityError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    import logging
    from typing import Any

MIN_VERSION = (1, 0)
SONAME = "libbpf.so.1"
LOGGER = "ebpf_gen.libbpf"


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger(LOGGER)


def __getattr__(name: str) -> Any:
    if name == "logger":  # the module attribute this used to be, made on first use
        return _logger()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_char_p = ctypes.c_char_p
c_size_t = ctypes.c_size_t
c_uint32 = ctypes.c_uint32


class BpfObjectOpenOpts(ctypes.Structure):
    """struct bpf_object_open_opts of libbpf 1.1 (libbpf.h); ``sz`` first, for compat."""

    _fields_ = [
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", c_char_p),
        ("_attach_prog_fd", c_uint32),  # removed field, kept as padding by libbpf
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_void_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint32),
    ]


class BpfUprobeOpts(ctypes.Structure):
    """struct bpf_uprobe_opts of libbpf 1.1."""

    _fields_ = [
        ("sz", c_size_t),
        ("ref_ctr_offset", c_size_t),
        ("bpf_cookie", ctypes.c_uint64),
        ("retprobe", ctypes.c_bool),
        ("func_name", c_char_p),
    ]


class BpfMapCreateOpts(ctypes.Structure):
    """struct bpf_map_create_opts of libbpf (bpf.h), up to map_flags: libbpf takes a
    shorter ``sz`` as an older caller's, the rest zero."""

    _fields_ = [
        ("sz", c_size_t),
        ("btf_fd", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("inner_map_fd", c_uint32),
        ("map_flags", c_uint32),
    ]


class BpfMapBatchOpts(ctypes.Structure):
    """struct bpf_map_batch_opts of libbpf (bpf.h)."""

    _fields_ = [("sz", c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class BpfMapInfo(ctypes.Structure):
    """The leading fields of struct bpf_map_info (the kernel accepts a shorter struct)."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", ctypes.c_char * 16),
    ]


# --- attach and test_run (programs.py, links.py, testrun.py) -------------------------------


class BpfTestRunOpts(ctypes.Structure):
    """struct bpf_test_run_opts of libbpf 1.1 (bpf.h)."""

    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class BpfTcHook(ctypes.Structure):
    """struct bpf_tc_hook (libbpf.h)."""

    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
    ]


class BpfTcOpts(ctypes.Structure):
    """struct bpf_tc_opts (libbpf.h)."""

    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
    ]


class BpfLinkCreateOpts(ctypes.Structure):
    """The leading fields of struct bpf_link_create_opts (bpf.h): ``flags`` carries XDP's
    mode; the rest stays zero (libbpf takes the shorter ``sz`` as an older caller's)."""

    _fields_ = [
        ("sz", c_size_t),
        ("flags", c_uint32),
    ]


class BpfUsdtOpts(ctypes.Structure):
    """struct bpf_usdt_opts (libbpf.h)."""

    _fields_ = [("sz", c_size_t), ("usdt_cookie", ctypes.c_uint64)]


class BpfPerfEventOpts(ctypes.Structure):
    """struct bpf_perf_event_opts (libbpf.h)."""

    _fields_ = [("sz", c_size_t), ("bpf_cookie", ctypes.c_uint64)]


def map_info(fd: int) -> BpfMapInfo:
    info = BpfMapInfo()
    size = c_uint32(ctypes.sizeof(info))
    check(
        lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
        f"bpf_obj_get_info_by_fd({fd})",
    )
    return info


# name: (restype, argtypes). Pointers to libbpf structs stay opaque c_void_p.
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_major_version": (c_uint32, []),
    "libbpf_minor_version": (c_uint32, []),
    "libbpf_version_string": (c_char_p, []),
    "libbpf_num_possible_cpus": (c_int, []),
    "bpf_object__open_mem": (c_void_p, [c_void_p, c_size_t, ctypes.POINTER(BpfObjectOpenOpts)]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
    "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
    "bpf_map__name": (c_char_p, [c_void_p]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_map__type": (c_int, [c_void_p]),
    "bpf_map__key_size": (c_uint32, [c_void_p]),
    "bpf_map__value_size": (c_uint32, [c_void_p]),
    "bpf_map__max_entries": (c_uint32, [c_void_p]),
    "bpf_map__map_flags": (c_uint32, [c_void_p]),
    "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint32]),
    "bpf_map__initial_value": (c_void_p, [c_void_p, ctypes.POINTER(c_size_t)]),
    "bpf_map__is_internal": (ctypes.c_bool, [c_void_p]),
    "bpf_map__inner_map": (c_void_p, [c_void_p]),  # a map of maps' template (before load)
    "bpf_program__name": (c_char_p, [c_void_p]),
    "bpf_program__section_name": (c_char_p, [c_void_p]),
    "bpf_program__type": (c_int, [c_void_p]),
    "libbpf_bpf_prog_type_str": (c_char_p, [c_int]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_program__autoload": (ctypes.c_bool, [c_void_p]),
    "bpf_program__set_autoload": (c_int, [c_void_p, ctypes.c_bool]),
    "bpf_program__set_log_buf": (c_int, [c_void_p, c_void_p, c_size_t]),
    "bpf_program__set_log_level": (c_int, [c_void_p, c_uint32]),
    "bpf_program__attach": (c_void_p, [c_void_p]),
    "bpf_program__attach_kprobe": (c_void_p, [c_void_p, ctypes.c_bool, c_char_p]),
    "bpf_program__attach_tracepoint": (c_void_p, [c_void_p, c_char_p, c_char_p]),
    "bpf_program__attach_raw_tracepoint": (c_void_p, [c_void_p, c_char_p]),
    "bpf_program__attach_uprobe_opts": (
        c_void_p,
        [c_void_p, c_int, c_char_p, c_size_t, ctypes.POINTER(BpfUprobeOpts)],
    ),
    "bpf_link__destroy": (c_int, [c_void_p]),
    # attach for every program type, and BPF_PROG_TEST_RUN (programs.py, links.py)
    "bpf_program__set_type": (c_int, [c_void_p, c_int]),
    "bpf_program__expected_attach_type": (c_int, [c_void_p]),
    "bpf_program__set_expected_attach_type": (c_int, [c_void_p, c_int]),
    "bpf_program__set_attach_target": (c_int, [c_void_p, c_int, c_char_p]),
    "bpf_program__attach_cgroup": (c_void_p, [c_void_p, c_int]),
    "bpf_program__attach_netns": (c_void_p, [c_void_p, c_int]),
    "bpf_program__attach_perf_event_opts": (c_void_p, [c_void_p, c_int, c_void_p]),
    "bpf_program__attach_usdt": (
        c_void_p, [c_void_p, c_int, c_char_p, c_char_p, c_char_p, c_void_p],
    ),
    "bpf_program__attach_iter": (c_void_p, [c_void_p, c_void_p]),
    "bpf_program__attach_lsm": (c_void_p, [c_void_p]),
    "bpf_program__attach_trace": (c_void_p, [c_void_p]),
    "bpf_program__attach_freplace": (c_void_p, [c_void_p, c_int, c_char_p]),
    "bpf_link_create": (c_int, [c_int, c_int, c_int, c_void_p]),
    "bpf_iter_create": (c_int, [c_int]),
    "bpf_prog_attach": (c_int, [c_int, c_int, c_int, c_uint32]),
    "bpf_prog_detach2": (c_int, [c_int, c_int, c_int]),
    "bpf_tc_hook_create": (c_int, [c_void_p]),
    "bpf_tc_hook_destroy": (c_int, [c_void_p]),
    "bpf_tc_attach": (c_int, [c_void_p, c_void_p]),
    "bpf_tc_detach": (c_int, [c_void_p, c_void_p]),
    "bpf_prog_test_run_opts": (c_int, [c_int, c_void_p]),
    "bpf_link__fd": (c_int, [c_void_p]),
    # Low-level syscall wrappers: fd + raw buffer addresses, the fast path for map access.
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_lookup_and_delete_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, ctypes.POINTER(c_uint32)]),
    "bpf_map_get_fd_by_id": (c_int, [c_uint32]),
    "bpf_map_create": (
        c_int,
        [c_int, c_char_p, c_uint32, c_uint32, c_uint32, ctypes.POINTER(BpfMapCreateOpts)],
    ),
    # Batch operations (maps.py), raw pointers: fd, in/out batch tokens, keys, values, count.
    "bpf_map_lookup_batch": (
        c_int, [c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p],
    ),
    "bpf_map_lookup_and_delete_batch": (
        c_int, [c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p],
    ),
    "bpf_map_update_batch": (c_int, [c_int, c_void_p, c_void_p, c_void_p, c_void_p]),
    "bpf_map_delete_batch": (c_int, [c_int, c_void_p, c_void_p, c_void_p]),
    # Open-object editing and pinning (objects.py, maps.py).
    "bpf_map__set_value_size": (c_int, [c_void_p, c_uint32]),
    "bpf_map__set_key_size": (c_int, [c_void_p, c_uint32]),
    "bpf_map__set_type": (c_int, [c_void_p, c_int]),
    "bpf_map__set_autocreate": (c_int, [c_void_p, ctypes.c_bool]),
    "bpf_map__autocreate": (ctypes.c_bool, [c_void_p]),
    "bpf_map__set_map_flags": (c_int, [c_void_p, c_uint32]),
    "bpf_map__set_inner_map_fd": (c_int, [c_void_p, c_int]),
    "bpf_map__reuse_fd": (c_int, [c_void_p, c_int]),
    "bpf_map__set_pin_path": (c_int, [c_void_p, c_char_p]),
    "bpf_map__pin_path": (c_char_p, [c_void_p]),
    "bpf_obj_pin": (c_int, [c_int, c_char_p]),
    "bpf_obj_get": (c_int, [c_char_p]),
    "bpf_link__pin": (c_int, [c_void_p, c_char_p]),
    "bpf_link__unpin": (c_int, [c_void_p]),
    "bpf_link__open": (c_void_p, [c_char_p]),
    "libbpf_set_print": (c_void_p, [c_void_p]),
    # libbpf's own event readers (events.py uses them where plain loads are not enough).
    "ring_buffer__new": (c_void_p, [c_int, c_void_p, c_void_p, c_void_p]),
    "ring_buffer__consume": (c_int, [c_void_p]),
    "ring_buffer__epoll_fd": (c_int, [c_void_p]),
    "ring_buffer__free": (None, [c_void_p]),
    "perf_buffer__new_raw": (
        c_void_p, [c_int, c_size_t, c_void_p, c_void_p, c_void_p, c_void_p],
    ),
    "perf_buffer__consume": (c_int, [c_void_p]),
    "perf_buffer__epoll_fd": (c_int, [c_void_p]),
    "perf_buffer__free": (None, [c_void_p]),
}

_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_WARNING, _INFO, _DEBUG = 30, 20, 10  # logging.WARNING, INFO, DEBUG
_LEVELS = (_WARNING, _INFO, _DEBUG)  # by LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG
# Bytes in a va_list object, to copy it (va_copy) and size the message before formatting.
_VA_LIST_SIZE = {"x86_64": 24, "aarch64": 32}.get(os.uname().machine, 0)
_lock = _thread.allocate_lock()  # threading.Lock, without importing threading
_capture = _thread._local()  # threading.local; .lines: list[str] while a load collects


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)  # the process's own libc
    libc.vsnprintf.restype = c_int
    libc.vsnprintf.argtypes = [c_void_p, c_size_t, c_char_p, c_void_p]
    return libc


def _format(fmt: bytes, args: int) -> str:
    vsnprintf = _libc().vsnprintf
    if _VA_LIST_SIZE:
        copy = ctypes.create_string_buffer(_VA_LIST_SIZE)
        ctypes.memmove(copy, args, _VA_LIST_SIZE)
        need = vsnprintf(None, 0, fmt, ctypes.addressof(copy))
        buf = ctypes.create_string_buffer(max(need, 0) + 1)
    else:  # unknown va_list layout: one pass, long messages truncated
        buf = ctypes.create_string_buffer(1 << 16)
    vsnprintf(buf, len(buf), fmt, args)
    return buf.value.decode("utf-8", "replace")


def _print(level: int, fmt: bytes | None, args: int | None) -> int:
    # An exception must not cross back into C: log what we can and carry on.
    try:
        pylevel = _LEVELS[level] if 0 <= level < len(_LEVELS) else _DEBUG
        lines: list[str] | None = getattr(_capture, "lines", None)
        wanted = lines is not None and pylevel >= _WARNING
        # Before anyone imports logging nobody can have enabled INFO/DEBUG for our logger,
        # so the many debug lines of a load are dropped without importing it. A warning
        # still goes through logging (its last-resort handler prints it to stderr).
        if pylevel < _WARNING and "logging" not in sys.modules:
            return 0
        logger = _logger()
        # Logging is the app's choice: with no handler configured anywhere, libbpf's lines
        # are not printed (the last-resort handler would put them on stderr beside every
        # exception, which quotes the ones that matter anyway)
        shown = logger.isEnabledFor(pylevel) and logger.hasHandlers()
        if fmt is not None and args is not None and (wanted or shown):
            text = _format(fmt, args).rstrip("\n")
            if wanted and lines is not None:
                lines.append(text)
            if shown:
                logger.log(pylevel, "%s", text)
    except Exception:  # pragma: no cover - defensive
        _logger().exception("formatting a libbpf message failed")
    return 0


_print_callback = _PRINT_FN(_print)  # module global: C keeps the pointer forever


@functools.cache
def lib() -> ctypes.CDLL:
    """libbpf.so.1 with prototypes set, its messages routed to logging (loaded once)."""
    try:
        handle = ctypes.CDLL(SONAME, use_errno=True)
    except OSError as e:
        raise LibbpfUnavailableError(
            f"cannot load {SONAME} ({e}): install the Debian package libbpf1 "
            "(apt-get install libbpf1)"
        ) from e
    try:
        major, minor = handle.libbpf_major_version(), handle.libbpf_minor_version()
    except AttributeError:
        major, minor = 0, 0
    if (major, minor) < MIN_VERSION:
        raise LibbpfUnavailableError(
            f"{SONAME} is version {major}.{minor}, ebpf_gen needs >= "
            f"{MIN_VERSION[0]}.{MIN_VERSION[1]}: install the Debian package libbpf1 >= 1.0"
        )
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(handle, name, None)
        if fn is None:  # newer symbol on an older 1.x: calls fail with AttributeError
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    with _lock:
        handle.libbpf_set_print(ctypes.cast(_print_callback, c_void_p))
    return handle


class capture_warnings:
    """Collect libbpf's warnings on this thread (still logged), to quote them in errors."""

    def __enter__(self) -> list[str]:
        self._saved = getattr(_capture, "lines", None)
        lines: list[str] = []
        _capture.lines = lines
        return lines

    def __exit__(self, *exc: object) -> None:
        _capture.lines = self._saved


def version() -> str:
    return str(lib().libbpf_version_string().decode())


@functools.cache
def num_possible_cpus() -> int:
    n = int(lib().libbpf_num_possible_cpus())
    if n < 0:
        raise LibbpfError(n, "libbpf_num_possible_cpus")
    return n


CAPABILITY_HINT = (
    "needs CAP_BPF plus CAP_PERFMON for tracing programs (CAP_SYS_ADMIN on kernels "
    "before 5.8): run as root or grant them, e.g. setcap cap_bpf,cap_perfmon+ep"
)


def error(err: int, what: str) -> LibbpfError | MissingCapabilityError:
    """The exception for a libbpf failure ``err`` (negative or positive errno)."""
    err = abs(err)
    if err in (1, 13):  # EPERM, EACCES
        return MissingCapabilityError(err, f"{what}: permission denied: {CAPABILITY_HINT}")
    return LibbpfError(err, what)


def check(ret: int, what: str) -> int:
    """``ret`` when >= 0, else raise the matching error."""
    if ret < 0:
        raise error(ret, what)
    return ret


def check_ptr(ptr: int | None, what: str) -> int:
    """A non-NULL pointer from libbpf, else raise with errno (libbpf 1.x sets it)."""
    if not ptr:
        raise error(ctypes.get_errno() or 22, what)
    return ptr
