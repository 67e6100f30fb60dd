"""One exception hierarchy for the generator.

Errors read as "where: what" chains (file, section, type id, member, offset) so the CLI
can print a single line and exit 2. Wrap with ``raise GenError(...) from e`` to keep the cause.
"""

from __future__ import annotations


class GenError(Exception):
    """Base of every error the generator reports to the user (exit code 2)."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
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


class ConfigError(GenError):
    """Bad command line or [tool.ebpf-gen] configuration."""


class OutputError(GenError):
    """Outputs cannot be written."""
