"""The ELF side of a BPF object: sections, symbols, .BTF bytes, and libbpf's BTF fix-up.

clang leaves DATASEC sizes (and, in older versions, VAR offsets) at zero because only the
ELF knows them; libbpf patches them at open time (``btf_fixup_datasec``). We apply the same
patch so offsets here are the ones libbpf and the kernel use.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .btf.types import DataSec, Linkage, Spec, Type, Var
from .btf.wire import byteorder_of
from .errors import BTFError, ElfError

EM_BPF = 247
# Names as readelf (and pyelftools) print them, for messages and for Section/Symbol fields.
_MACHINES = {0: "EM_NONE", 3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64",
             22: "EM_S390", 40: "EM_ARM", 62: "EM_X86_64", 183: "EM_AARCH64",
             243: "EM_RISCV", 247: "EM_BPF", 258: "EM_LOONGARCH"}
_SECTION_TYPES = {0: "SHT_NULL", 1: "SHT_PROGBITS", 2: "SHT_SYMTAB", 3: "SHT_STRTAB",
                  4: "SHT_RELA", 5: "SHT_HASH", 6: "SHT_DYNAMIC", 7: "SHT_NOTE",
                  8: "SHT_NOBITS", 9: "SHT_REL", 10: "SHT_SHLIB", 11: "SHT_DYNSYM",
                  14: "SHT_INIT_ARRAY", 15: "SHT_FINI_ARRAY", 16: "SHT_PREINIT_ARRAY",
                  17: "SHT_GROUP", 18: "SHT_SYMTAB_SHNDX", 0x6FFF4C00: "SHT_LLVM_ODRTAB",
                  0x6FFF4C01: "SHT_LLVM_LINKER_OPTIONS", 0x6FFF4C03: "SHT_LLVM_ADDRSIG",
                  0x6FFFFFF5: "SHT_GNU_ATTRIBUTES", 0x6FFFFFF6: "SHT_GNU_HASH",
                  0x6FFFFFFD: "SHT_GNU_verdef", 0x6FFFFFFE: "SHT_GNU_verneed",
                  0x6FFFFFFF: "SHT_GNU_versym"}
_BINDS = {0: "STB_LOCAL", 1: "STB_GLOBAL", 2: "STB_WEAK", 10: "STB_LOOS", 12: "STB_HIOS",
          13: "STB_LOPROC", 15: "STB_HIPROC"}
_SYMBOL_TYPES = {0: "STT_NOTYPE", 1: "STT_OBJECT", 2: "STT_FUNC", 3: "STT_SECTION",
                 4: "STT_FILE", 5: "STT_COMMON", 6: "STT_TLS", 10: "STT_LOOS", 12: "STT_HIOS",
                 13: "STT_LOPROC", 15: "STT_HIPROC"}
_VISIBILITIES = ("STV_DEFAULT", "STV_INTERNAL", "STV_HIDDEN", "STV_PROTECTED")
_SHT_SYMTAB = 2
_SHN_LORESERVE = 0xFF00  # st_shndx at or past this is UNDEF-like (ABS, COMMON, XINDEX)
_SHN_XINDEX = 0xFFFF
# Sections whose DATASEC describes externs, resolved by libbpf from the kernel: no ELF section
_EXTERN_SECTIONS = (".kconfig", ".ksyms")


@dataclass(frozen=True)
class Section:
    index: int
    name: str
    size: int
    flags: int  # SHF_*
    type: str  # "SHT_PROGBITS", "SHT_NOBITS", ...

    @property
    def executable(self) -> bool:
        return bool(self.flags & 0x4)  # SHF_EXECINSTR


@dataclass(frozen=True)
class Symbol:
    name: str
    section: str  # "" for undefined/absolute/common symbols
    section_index: int  # 0 when ``section`` is ""
    value: int
    size: int
    bind: str  # "STB_GLOBAL", "STB_LOCAL", "STB_WEAK"
    type: str  # "STT_FUNC", "STT_OBJECT", ...
    visibility: str  # "STV_DEFAULT", "STV_HIDDEN", ...


@dataclass(frozen=True)
class ElfObject:
    path: str  # as given, for messages
    byteorder: str  # "little" / "big", from the ELF header (checked against the BTF magic)
    sections: tuple[Section, ...]
    symbols: tuple[Symbol, ...]
    btf: bytes

    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    @cached_property
    def var_symbols(self) -> Mapping[str, Symbol]:
        """libbpf's find_elf_var_sym as an index: global or weak data objects by name.

        Built once, since every global VAR of every DATASEC looks itself up here.
        """
        index: dict[str, Symbol] = {}
        for sym in self.symbols:
            if sym.type == "STT_OBJECT" and sym.bind in ("STB_GLOBAL", "STB_WEAK"):
                index.setdefault(sym.name, sym)  # the first, as libbpf's scan finds it
        return index


# No BPF object comes near this (vmlinux's whole BTF is ~6 MiB); past it, a file is
# refused before it is read rather than read without bound.
MAX_OBJECT_SIZE = 256 << 20


def read_bytes(path: Path, *, limit: int = MAX_OBJECT_SIZE) -> bytes:
    """The bytes of an object file; unreadable input is an ElfError naming ``path``.

    Only a regular file is read: it is opened with O_NONBLOCK (a FIFO must not block
    the open) and checked with fstat on the opened descriptor (no race with a rename),
    and a file larger than ``limit`` is refused (``/dev/zero`` never ends).
    """
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError as e:
        raise ElfError("is a directory, not an ELF object", where=where) from e
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ElfError("too many levels of symbolic links", where=where) from e
        raise ElfError(f"cannot read: {e.strerror}", where=where) from e
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ElfError("is a directory, not an ELF object", where=where)
        if not stat.S_ISREG(st.st_mode):
            raise ElfError(f"is a {_file_kind(st.st_mode)}, not a regular file", where=where)
        if st.st_size > limit:
            raise ElfError(f"{st.st_size} bytes, more than the {limit} an object may have",
                           where=where)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
        if len(data) > limit:  # grew while being read
            raise ElfError(f"more than the {limit} bytes an object may have", where=where)
        return data
    except OSError as e:
        raise ElfError(f"cannot read: {e.strerror or e}", where=where) from e
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def read_elf(path: Path) -> ElfObject:
    """Read a BPF ELF object. Raises ElfError/BTFError naming ``path``."""
    return parse_elf(read_bytes(path), str(path))


def parse_elf(data: bytes, where: str) -> ElfObject:
    """Parse the bytes of a BPF ELF object; errors name ``where`` (a path, or what the
    reader knows the object as: a temporary compile output is named after its source)."""
    if data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file", where=where)
    try:
        return _parse(data, where)
    except struct.error as e:  # a header or table cut short
        raise ElfError(f"malformed ELF: {e}", where=where) from e


class _Raw:
    """Bounds-checked access to the file's bytes: every table and section is checked
    against the file size before it is read."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data = data
        self.where = where

    def span(self, what: str, offset: int, size: int) -> bytes:
        if offset + size > len(self.data):
            raise ElfError(
                f"malformed ELF: {what} [{offset}, {offset + size}) runs past the end of "
                f"{len(self.data)} bytes",
                where=self.where,
            )
        return self.data[offset : offset + size]


def _cstr(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", "replace")


def _parse(data: bytes, where: str) -> ElfObject:
    # The ELF64 layout is read with struct rather than pyelftools: importing pyelftools
    # costs more than the whole rest of `ebpf-gen --object` (bench/gen_speed.py).
    raw = _Raw(data, where)
    ident = raw.span("ELF identification", 0, 16)
    elfclass, encoding = ident[4], ident[5]
    if encoding not in (1, 2):
        raise ElfError(f"malformed ELF: unknown data encoding {encoding}", where=where)
    order = "<" if encoding == 1 else ">"
    (machine,) = struct.unpack_from(order + "H", data, 18)
    if machine != EM_BPF:
        name = _MACHINES.get(machine, str(machine))
        raise ElfError(f"not a BPF object (e_machine {name}, expected EM_BPF)", where=where)
    if elfclass != 2:
        bits = {1: 32}.get(elfclass, elfclass)
        raise ElfError(f"ELF class {bits}: BPF objects are 64-bit", where=where)
    byteorder = "little" if encoding == 1 else "big"
    shoff, _, _, _, _, shentsize, shnum, shstrndx = struct.unpack_from(
        order + "QIHHHHHH", data, 40  # e_shoff .. e_shstrndx
    )
    headers: list[tuple[int, ...]] = []
    if shoff:
        if shentsize != 64:
            raise ElfError(f"malformed ELF: e_shentsize {shentsize}, expected 64", where=where)
        first = struct.unpack(order + "IIQQQQIIQQ", raw.span("section header 0", shoff, 64))
        if shnum == 0:  # extended numbering: the count is in section 0
            shnum = first[5]
        if shstrndx == _SHN_XINDEX:
            shstrndx = first[6]
        table = raw.span("section header table", shoff, 64 * shnum)
        headers = list(struct.iter_unpack(order + "IIQQQQIIQQ", table))
    if headers and not 0 <= shstrndx < len(headers):
        raise ElfError(f"malformed ELF: e_shstrndx {shstrndx} out of range", where=where)

    def contents(index: int) -> bytes:
        h = headers[index]
        if h[1] == 8:  # SHT_NOBITS occupies no file space
            return b""
        return raw.span(f"section {index}", h[4], h[5])

    shstrtab = contents(shstrndx) if headers else b""
    sections: list[Section] = []
    btf: bytes | None = None
    for index, (name_off, sh_type, flags, _, _, size, *_rest) in enumerate(headers):
        name = _cstr(shstrtab, name_off)
        sections.append(Section(index, name, size, flags,
                                _SECTION_TYPES.get(sh_type, str(sh_type))))
        if name == ".BTF":
            btf = contents(index)
    names = {s.index: s.name for s in sections}
    symbols: list[Symbol] = []
    for index, h in enumerate(headers):
        if h[1] != _SHT_SYMTAB:
            continue
        if not 0 <= h[6] < len(headers):
            raise ElfError(f"malformed ELF: section {index}: sh_link {h[6]} out of range",
                           where=where)
        strtab = contents(h[6])
        table = contents(index)
        for st_name, info, other, shndx, value, size in struct.iter_unpack(
            order + "IBBHQQ", table[: len(table) - len(table) % 24]
        ):
            idx = shndx if shndx < _SHN_LORESERVE else 0
            symbols.append(
                Symbol(
                    name=_cstr(strtab, st_name),
                    section=names.get(idx, "") if idx else "",
                    section_index=idx,
                    value=value,
                    size=size,
                    bind=_BINDS.get(info >> 4, str(info >> 4)),
                    type=_SYMBOL_TYPES.get(info & 0xF, str(info & 0xF)),
                    visibility=_VISIBILITIES[other & 0x3],
                )
            )
    if btf is None:
        raise BTFError("no .BTF section (compile with clang -g)", where=where)
    magic_order = byteorder_of(btf, where=f"{where}: .BTF")
    if magic_order != byteorder:
        raise BTFError(
            f"byte order {magic_order}-endian disagrees with the ELF header ({byteorder}-endian)",
            where=f"{where}: .BTF",
        )
    return ElfObject(where, byteorder, tuple(sections), tuple(symbols), btf)


def exposed(spec: Spec, obj: ElfObject, var_id: int) -> bool:
    """Whether a DATASEC VAR is visible to user space: global linkage, default visibility.

    libbpf turns hidden/internal symbols into static VARs, and static VARs get no symbol
    offset we could trust; neither is part of the object's interface.
    """
    var = spec[var_id]
    if not isinstance(var, Var) or var.linkage != Linkage.GLOBAL:
        return False
    sym = obj.var_symbols.get(var.name)
    return sym is not None and sym.visibility not in ("STV_HIDDEN", "STV_INTERNAL")


def fixup_btf(spec: Spec, obj: ElfObject) -> Spec:
    """libbpf's btf_fixup_datasec: DATASEC sizes from ELF sections, VAR offsets from symbols.

    VARs are sorted by offset afterwards, as libbpf does.
    """
    types: list[Type] = list(spec.types)
    changed = False
    for t in spec.types:
        if not isinstance(t, DataSec) or not t.name or t.name in _EXTERN_SECTIONS:
            continue
        where = f"{obj.path}: DATASEC '{t.name}' (type id {t.id})"
        size = t.size
        fix_offsets = size == 0
        if fix_offsets:
            sec = obj.section(t.name)
            if sec is None or sec.size == 0:
                raise BTFError("no ELF section of that name to take its size from", where=where)
            size = sec.size
        infos = []
        for i, vsi in enumerate(t.vars):
            var = spec[vsi.type] if 0 <= vsi.type < len(spec) else None
            if not isinstance(var, Var):
                raise BTFError(f"entry #{i} (type id {vsi.type}) is not a VAR", where=where)
            offset = vsi.offset
            if fix_offsets and var.linkage == Linkage.GLOBAL:
                sym = obj.var_symbols.get(var.name)
                if sym is None:
                    raise BTFError(f"no ELF symbol for VAR '{var.name}'", where=where)
                offset = sym.value
            infos.append(vsi._replace(offset=offset))
        infos.sort(key=lambda v: v.offset)
        fixed = t._replace(size=size, vars=tuple(infos))
        if fixed != t:
            types[t.id] = fixed
            changed = True
    return dataclasses.replace(spec, types=tuple(types)) if changed else spec
