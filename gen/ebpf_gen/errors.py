"""One exception hierarchy for the generator.

Errors read as "where: what" chains (file, section, type id, member, offset) so the CLI
can print a single line and exit 2. Wrap with ``raise GenError(...) from e`` to keep the cause.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


def printable(text: str) -> str:
    """``text`` with every character ``str.isprintable`` rejects written as a Python escape
    (``\\n``, ``\\x1b``, ``\\u202e``): controls, format characters such as bidi overrides,
    line separators and invisible spaces.

    Names come from the object file, which is untrusted: a section called "a\\nb" or one
    holding an ANSI escape must not print a second line or recolour the terminal. Every
    message passes through here (GenError does it), so no caller has to remember to.
    Applying it twice changes nothing: its output holds only printable characters.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class GenError(Exception):
    """Base of every error the generator reports to the user (exit code 2)."""

    # Only CompileError carries text meant to span lines (clang's own diagnostics).
    multiline = False

    def __init__(self, message: str, *, where: str | None = None) -> None:
        if not self.multiline:
            message = printable(message)
        where = printable(where) if where is not None else None
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)

    def within(self, where: str) -> GenError:
        """Return the same kind of error with ``where`` prefixed to its location."""
        inner = f"{where}: {self.where}" if self.where else where
        err = type(self).__new__(type(self))
        GenError.__init__(err, self.message, where=inner)
        return err


class ElfError(GenError):
    """The input is not a (BPF) ELF object, or a section is malformed."""


class BTFError(GenError):
    """.BTF is missing, truncated or malformed."""


class LayoutError(GenError):
    """A type cannot be laid out in ctypes as BTF says, or the two byte orders disagree."""


class SourceError(GenError):
    """The C source cannot be analysed."""


class CompileError(GenError):
    """clang or llvm-strip is missing or failed; the message carries the command and stderr."""

    multiline = True


class ConfigError(GenError):
    """Bad command line or [tool.ebpf-gen] configuration."""


class OutputError(GenError):
    """Outputs cannot be written."""


class InternalError(GenError):
    """An exception the generator did not expect, met while reading or laying out an input.

    Still one line naming the file and exit 2 for the user, but a bug for us: the fuzz
    target counts it as a failure, unlike every other GenError.
    """


# Nesting deeper than this is refused before any walk: Python's parser rejects more than
# 200 nested parentheses, and no real C type comes near (vmlinux's deepest is under 20).
MAX_NESTING = 100


@contextlib.contextmanager
def guarded(where: str) -> Iterator[None]:
    """Turn every exception raised inside into a GenError naming ``where``.

    GenErrors that do not name ``where`` yet get it prefixed; anything else becomes an
    InternalError (a RecursionError says what it most likely means).
    """
    try:
        yield
    except GenError as e:
        if e.where is not None and e.where.startswith(printable(where)):
            raise
        raise e.within(where) from e
    except RecursionError as e:
        raise InternalError(
            "types nest too deeply or refer to themselves (recursion limit reached)", where=where
        ) from e
    except MemoryError as e:
        raise InternalError("out of memory reading the object", where=where) from e
    except Exception as e:  # the point: nothing escapes as a traceback
        tb = e.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        at = ""
        if tb is not None:  # where it was raised, for the report: "at ctypes_fmt.py:219"
            at = f" at {tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
        detail = f": {e}" if str(e) else ""
        raise InternalError(
            f"internal error {type(e).__name__}{at}{detail} (please report this input)",
            where=where,
        ) from e
