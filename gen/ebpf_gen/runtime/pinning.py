"""Pinning maps and links on a BPF filesystem, and opening what was pinned.

A pin is a file on a bpffs that keeps the kernel object alive after its process exits;
another process (or the same app after a restart) opens it again by path. libbpf's errors
for a path outside any bpffs are terse, so every path is checked first and the error says
how to mount one.
"""

from __future__ import annotations

import ctypes
import os

from . import libbpf
from .errors import RuntimeBPFError
from .programs import Link

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from .spec import MapSpec

BPF_FS_MAGIC = 0xCAFE4A11
MOUNT_HINT = "mount one with `mount -t bpf bpf /sys/fs/bpf` (any empty directory works)"


class NotOnBpffsError(RuntimeBPFError):
    """A pin path is not on a mounted BPF filesystem."""


def _fs_type(path: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = (ctypes.c_long * 32)()  # struct statfs: f_type is the first word on Linux
    if libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(buf[0]) & 0xFFFFFFFF


def is_bpffs(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (an existing file or directory) is on a BPF filesystem."""
    return _fs_type(os.fspath(path)) == BPF_FS_MAGIC


def require_bpffs(directory: str | os.PathLike[str], what: str) -> None:
    """Raise NotOnBpffsError unless ``directory`` (or, when it does not exist yet, its
    nearest existing parent) is on a bpffs."""
    path = os.path.abspath(os.fspath(directory))
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    fs = _fs_type(probe)
    if fs != BPF_FS_MAGIC:
        raise NotOnBpffsError(
            f"{what}: {path} is not on a BPF filesystem (bpffs; {probe} has filesystem "
            f"magic {fs:#x}): {MOUNT_HINT}"
        )


def pin_fd(fd: int, path: str | os.PathLike[str], what: str) -> str:
    """Pin the BPF object ``fd`` at ``path``; the absolute path."""
    full = os.path.abspath(os.fspath(path))
    require_bpffs(os.path.dirname(full), what)
    if os.path.exists(full):
        raise FileExistsError(f"{what}: {full} already exists (unpin it or choose another path)")
    libbpf.check(libbpf.lib().bpf_obj_pin(fd, os.fsencode(full)), f"{what}: pin at {full}")
    return full


def open_fd(path: str | os.PathLike[str], what: str) -> int:
    """A new fd of the object pinned at ``path``."""
    full = os.path.abspath(os.fspath(path))
    if not os.path.exists(full):
        raise FileNotFoundError(f"{what}: nothing is pinned at {full}")
    require_bpffs(full, what)
    return libbpf.check(libbpf.lib().bpf_obj_get(os.fsencode(full)), f"{what}: open {full}")


def check_pinned_map(spec: MapSpec, fd: int, path: str,
                     sizes: tuple[int, int] = (0, 0)) -> Any:
    """The kernel's info for the map at ``fd`` after checking it matches ``spec`` (and
    the object's key and value ``sizes`` where no type gives them; 0: not declared)."""
    from .spec import MapKind

    info = libbpf.map_info(fd)
    problems = []
    if info.type != spec.kind:
        try:
            kind = MapKind(info.type).name
        except ValueError:
            kind = str(info.type)
        problems.append(f"it is {kind}, the skeleton's map is {spec.kind.name}")
    for what, ctype, size, declared in (("key", spec.key, info.key_size, sizes[0]),
                                        ("value", spec.value, info.value_size, sizes[1])):
        if ctype is not None and ctypes.sizeof(ctype) != size:
            problems.append(f"its {what}s are {size} bytes, the skeleton's "
                            f"{ctype.__name__} is {ctypes.sizeof(ctype)}")
        elif ctype is None and declared and declared != size:
            problems.append(f"its {what}s are {size} bytes, the object declares {declared}")
    if problems:
        raise TypeError(f"map {spec.name!r} pinned at {path}: " + "; ".join(problems))
    return info


def open_pinned_link(path: str | os.PathLike[str]) -> PinnedLink:
    """The link pinned at ``path``, as a Link whose close() drops this process's hold;
    the program stays attached until the pin is removed too (``unpin()`` first)."""
    full = os.path.abspath(os.fspath(path))
    if not os.path.exists(full):
        raise FileNotFoundError(f"link: nothing is pinned at {full}")
    require_bpffs(full, "link")
    ptr = libbpf.check_ptr(libbpf.lib().bpf_link__open(os.fsencode(full)), f"link: open {full}")
    return PinnedLink(ptr, full)


class PinnedLink(Link):
    """A link opened from its pin: no Program object of this process behind it."""

    def __init__(self, ptr: int, path: str) -> None:
        self._ptr = ptr
        self.target = path
        self._pin_path: str | None = path  # unpin() removes the pin it was opened from

    def _label(self) -> str:
        return f"pinned link {self.target}"

    def close(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            libbpf.lib().bpf_link__destroy(ptr)

    def __repr__(self) -> str:
        return f"<PinnedLink {self.target} {'closed' if self._ptr is None else 'open'}>"
