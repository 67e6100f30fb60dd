"""Errors raised by ebpf_gen.runtime.

Every error names the object, map or program involved and, when the kernel or libbpf
refused, the errno; load failures carry the verifier log.
"""

from __future__ import annotations

import errno as _errno
import os


class RuntimeBPFError(Exception):
    """Base of every error the runtime raises (besides TypeError/KeyError/ValueError)."""


class LibbpfUnavailableError(RuntimeBPFError):
    """libbpf.so.1 is missing or too old."""


class LibbpfError(RuntimeBPFError, OSError):
    """A libbpf call or bpf() syscall failed; ``errno`` holds the (positive) error number."""

    def __init__(self, errno: int, msg: str) -> None:
        errno = abs(errno)
        detail = os.strerror(errno) if errno else "unknown error"
        OSError.__init__(self, errno, f"{msg}: {detail} ({_errno.errorcode.get(errno, errno)})")
        self.msg = msg

    def __str__(self) -> str:
        return str(self.strerror)


class MissingCapabilityError(RuntimeBPFError, PermissionError):
    """The kernel refused with EPERM/EACCES: the message names the capability to grant."""

    def __init__(self, errno: int, msg: str) -> None:
        PermissionError.__init__(self, errno, msg)
        self.msg = msg

    def __str__(self) -> str:
        return self.msg


class LoadError(RuntimeBPFError):
    """bpf_object__load failed; ``log`` is the verifier log of the failing program."""

    def __init__(self, msg: str, *, errno: int, log: str = "", program: str | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.errno = errno
        self.log = log
        self.program = program

    def __str__(self) -> str:
        if not self.log:
            return self.msg
        # The tail holds the verifier's verdict; the whole log stays in .log.
        tail = "\n".join(self.log.rstrip().splitlines()[-20:])
        return f"{self.msg}\nverifier log (last lines):\n{tail}"


class AttachError(RuntimeBPFError):
    """A program could not be attached: names the program, the target and why."""

    def __init__(self, msg: str, *, errno: int = 0) -> None:
        super().__init__(msg)
        self.errno = errno


class ObjectFileError(RuntimeBPFError):
    """The compiled object next to the generated module is missing or not the one generated."""


def check_uint(what: str, value: object, bits: int) -> int:
    """``value`` as an unsigned ``bits``-wide C integer, or an error naming ``what``.

    ctypes converts an int to c_uint32/c_uint64 by masking it, so without this check
    ``max_entries=2**32 + 4`` becomes 4 and ``flags=2**64 + 1`` becomes BPF_NOEXIST.
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what}: expected an int, got {type(value).__name__}")
    if not 0 <= value < 1 << bits:
        raise OverflowError(f"{what}: {value} out of range for u{bits} [0, {(1 << bits) - 1}]")
    return value
