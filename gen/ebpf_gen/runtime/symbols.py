"""Addresses to names: kernel addresses through /proc/kallsyms, user addresses through
/proc/PID/maps and the ELF symbol tables of the mapped files.

The runtime must not import the generator, so this carries its own small ELF reader
(header, program headers, .symtab/.dynsym, the GNU build id): stdlib only.
"""

from __future__ import annotations

import bisect
import os
import struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Iterable


class Symbol:
    """Where an address is: ``name`` (None when unknown), ``offset`` from the symbol's
    start, ``module`` (kernel module, or the mapped file's path). ``str()`` gives the
    usual ``name+0x1f [module]``."""

    __slots__ = ("address", "module", "name", "offset")

    def __init__(self, address: int, name: str | None, offset: int, module: str | None) -> None:
        self.address = address
        self.name = name
        self.offset = offset
        self.module = module

    def __str__(self) -> str:
        where = f" [{self.module}]" if self.module else ""
        if self.name is None:
            return f"{self.address:#x}{where}"
        return f"{self.name}+{self.offset:#x}{where}"

    def __repr__(self) -> str:
        return f"<Symbol {self}>"


class _Table:
    """Sorted (start, name) pairs, bisected."""

    def __init__(self, entries: Iterable[tuple[int, str]]) -> None:
        pairs = sorted(entries)
        self.starts = [a for a, _ in pairs]
        self.names = [n for _, n in pairs]

    def find(self, addr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0:
            return None
        return self.names[i], addr - self.starts[i]


class KernelSymbols:
    """/proc/kallsyms, read once per instance (``kernel_symbols()`` shares one)."""

    def __init__(self, path: str = "/proc/kallsyms") -> None:
        entries: list[tuple[int, str]] = []
        modules: dict[str, str] = {}
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[1] not in "tTwW":
                    continue  # functions only: a stack holds code addresses
                addr = int(parts[0], 16)
                if addr == 0:
                    continue  # kptr_restrict hides addresses from this process
                entries.append((addr, parts[2]))
                if len(parts) > 3:
                    modules[parts[2]] = parts[3].strip("[]")
        if not entries:
            raise PermissionError(f"{path} shows no addresses (kptr_restrict): run as root")
        self._table = _Table(entries)
        self._modules = modules

    def __call__(self, addr: int) -> Symbol:
        found = self._table.find(addr)
        if found is None:
            return Symbol(addr, None, 0, None)
        name, off = found
        return Symbol(addr, name, off, self._modules.get(name))


_kernel: KernelSymbols | None = None


def kernel_symbols() -> KernelSymbols:
    """The process-wide KernelSymbols (kallsyms is large: read it once)."""
    global _kernel
    if _kernel is None:
        _kernel = KernelSymbols()
    return _kernel


class ElfSymbols:
    """The function symbols of one ELF file, its PT_LOAD segments and GNU build id."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] != b"\x7fELF":
            raise ValueError(f"{path}: not an ELF file")
        is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
        if is64:
            ehdr = struct.unpack_from(order + "HHIQQQIHHHHHH", data, 16)
            phoff, shoff, phentsize, phnum, shentsize, shnum = (
                ehdr[4], ehdr[5], ehdr[8], ehdr[9], ehdr[10], ehdr[11])
            ph_fmt, sh_fmt, sym_fmt = order + "IIQQQQQQ", order + "IIQQQQIIQQ", order + "IBBHQQ"
        else:
            ehdr = struct.unpack_from(order + "HHIIIIIHHHHHH", data, 16)
            phoff, shoff, phentsize, phnum, shentsize, shnum = (
                ehdr[4], ehdr[5], ehdr[8], ehdr[9], ehdr[10], ehdr[11])
            ph_fmt, sh_fmt, sym_fmt = order + "IIIIIIII", order + "IIIIIIIIII", order + "IIIBBH"
        self.loads: list[tuple[int, int, int]] = []  # (p_offset, p_vaddr, p_filesz)
        self.build_id: bytes | None = None
        for i in range(phnum):
            ph = struct.unpack_from(ph_fmt, data, phoff + i * phentsize)
            if is64:
                p_type, p_offset, p_vaddr, p_filesz = ph[0], ph[2], ph[3], ph[5]
            else:
                p_type, p_offset, p_vaddr, p_filesz = ph[0], ph[1], ph[2], ph[4]
            if p_type == 1:  # PT_LOAD
                self.loads.append((p_offset, p_vaddr, p_filesz))
            elif p_type == 4 and self.build_id is None:  # PT_NOTE
                self.build_id = _build_id(data[p_offset : p_offset + p_filesz], order)
        sections = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize)
                    for i in range(shnum if shoff else 0)]
        entries: list[tuple[int, str]] = []
        for sh in sections:
            sh_type = sh[1]
            if sh_type not in (2, 11):  # SHT_SYMTAB, SHT_DYNSYM
                continue
            off, size, link, entsize = sh[4], sh[5], sh[6], sh[9]
            stroff = sections[link][4] if link < len(sections) else 0
            for j in range(entsize and size // entsize):
                sym = struct.unpack_from(sym_fmt, data, off + j * entsize)
                if is64:
                    name, info, shndx, value = sym[0], sym[1], sym[3], sym[4]
                else:
                    name, value, info, shndx = sym[0], sym[1], sym[3], sym[5]
                if info & 0xF != 2 or shndx == 0 or value == 0:  # STT_FUNC, defined
                    continue
                end = data.index(b"\0", stroff + name)
                entries.append((value, data[stroff + name : end].decode(errors="replace")))
        self._table = _Table(entries)

    def vaddr(self, file_offset: int) -> int | None:
        """The ELF virtual address of a file offset, through the PT_LOAD segments."""
        for p_offset, p_vaddr, p_filesz in self.loads:
            if p_offset <= file_offset < p_offset + p_filesz:
                return file_offset - p_offset + p_vaddr
        return None

    def find(self, vaddr: int) -> tuple[str, int] | None:
        return self._table.find(vaddr)


def _build_id(notes: bytes, order: str) -> bytes | None:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from(order + "III", notes, pos)
        name_end = pos + 12 + ((namesz + 3) & ~3)
        if ntype == 3 and notes[pos + 12 : pos + 12 + namesz] == b"GNU\0":  # NT_GNU_BUILD_ID
            return notes[name_end : name_end + descsz]
        pos = name_end + ((descsz + 3) & ~3)
    return None


class UserSymbols:
    """Names for addresses in process ``pid``: /proc/PID/maps is read when created (call
    ``refresh()`` after the process maps more), ELF files are read on first need. Works
    after the process exits only for mappings read while it lived."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._files: dict[str, ElfSymbols | None] = {}
        self.refresh()

    def refresh(self) -> None:
        maps: list[tuple[int, int, int, str]] = []
        with open(f"/proc/{self.pid}/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                maps.append((lo, hi, int(parts[2], 16), parts[5].rstrip("\n")))
        maps.sort()
        self._maps = maps
        self._starts = [m[0] for m in maps]

    def _elf(self, path: str) -> ElfSymbols | None:
        if path not in self._files:
            try:  # through the process's root, so containers' files are found
                self._files[path] = ElfSymbols(f"/proc/{self.pid}/root{path}")
            except (OSError, ValueError, struct.error):
                try:
                    self._files[path] = ElfSymbols(path)
                except (OSError, ValueError, struct.error):
                    self._files[path] = None
        return self._files[path]

    def __call__(self, addr: int) -> Symbol:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or addr >= self._maps[i][1]:
            return Symbol(addr, None, 0, None)
        lo, _, file_off, path = self._maps[i]
        elf = self._elf(path)
        vaddr = elf.vaddr(addr - lo + file_off) if elf else None
        found = elf.find(vaddr) if elf and vaddr is not None else None
        if found is None:
            return Symbol(addr, None, 0, path)
        name, off = found
        return Symbol(addr, name, off, os.path.basename(path))


def symbolize(addresses: Iterable[int], pid: int | None = None,
              user: UserSymbols | None = None) -> list[Symbol]:
    """Symbols for a stack: kernel addresses (the upper half of the address space) by
    kallsyms, the others in process ``pid`` (or the given UserSymbols)."""
    out: list[Symbol] = []
    for addr in addresses:
        if addr >= 1 << 63:
            out.append(kernel_symbols()(addr))
        elif user is not None or pid is not None:
            if user is None:
                user = UserSymbols(pid)  # type: ignore[arg-type]
            out.append(user(addr))
        else:
            out.append(Symbol(addr, None, 0, None))
    return out
