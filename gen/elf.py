"""The ELF side of a BPF object: sections, symbols, .BTF bytes, and libbpf's BTF fix-up.

clang leaves DATASEC sizes (and, in older versions, VAR offsets) at zero because only the
ELF knows them; libbpf patches them at open time (``btf_fixup_datasec``). We apply the same
patch so offsets here are the ones libbpf and the kernel use.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from .btf.types import DataSec, Linkage, Spec, Type, Var
from .errors import BTFError, ElfError

EM_BPF = 247
_BTF_MAGIC = 0xEB9F
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


def read_elf(path: Path) -> ElfObject:
    """Read a BPF ELF object. Raises ElfError/BTFError naming ``path``."""
    where = str(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError as e:
        raise ElfError("is a directory, not an ELF object", where=where) from e
    except OSError as e:
        raise ElfError(f"cannot read: {e.strerror}", where=where) from e
    if data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file", where=where)
    try:
        return _parse(data, where)
    except (_PyElfError, struct.error, ValueError, KeyError, IndexError) as e:
        # pyelftools raises these (and construct's errors, ValueError subclasses) on
        # truncated headers/tables; the message carries the offset when it has one
        raise ElfError(f"malformed ELF: {e}", where=where) from e
    except Exception as e:  # construct.StreamError and friends are not ValueErrors
        if type(e).__module__.startswith(("construct", "elftools")):
            raise ElfError(f"malformed ELF: {e}", where=where) from e
        raise


def _parse(data: bytes, where: str) -> ElfObject:
    elf = ELFFile(io.BytesIO(data))
    machine = elf.header["e_machine"]
    if machine not in ("EM_BPF", EM_BPF):
        raise ElfError(f"not a BPF object (e_machine {machine}, expected EM_BPF)", where=where)
    if elf.elfclass != 64:
        raise ElfError(f"ELF class {elf.elfclass}: BPF objects are 64-bit", where=where)
    byteorder = "little" if elf.little_endian else "big"

    sections: list[Section] = []
    symbols: list[Symbol] = []
    btf: bytes | None = None
    for index, sec in enumerate(elf.iter_sections()):
        sections.append(
            Section(index, sec.name, sec["sh_size"], sec["sh_flags"], str(sec["sh_type"]))
        )
        if sec.name == ".BTF":
            btf = sec.data()
    names = {s.index: s.name for s in sections}
    for sec in elf.iter_sections():
        if not isinstance(sec, SymbolTableSection) or sec["sh_type"] != "SHT_SYMTAB":
            continue
        for sym in sec.iter_symbols():
            shndx = sym["st_shndx"]
            idx = shndx if isinstance(shndx, int) else 0
            symbols.append(
                Symbol(
                    name=sym.name,
                    section=names.get(idx, "") if idx else "",
                    section_index=idx,
                    value=sym["st_value"],
                    size=sym["st_size"],
                    bind=str(sym["st_info"]["bind"]),
                    type=str(sym["st_info"]["type"]),
                    visibility=str(sym["st_other"]["visibility"]),
                )
            )
    if btf is None:
        raise BTFError("no .BTF section (compile with clang -g)", where=where)
    if len(btf) < 2:
        raise BTFError(f"truncated .BTF: {len(btf)} bytes", where=f"{where}: .BTF")
    magic_order = _magic_order(btf)
    if magic_order is None:
        raise BTFError(f"bad magic 0x{btf[0]:02x}{btf[1]:02x}", where=f"{where}: .BTF")
    if magic_order != byteorder:
        raise BTFError(
            f"byte order {magic_order}-endian disagrees with the ELF header ({byteorder}-endian)",
            where=f"{where}: .BTF",
        )
    return ElfObject(where, byteorder, tuple(sections), tuple(symbols), btf)


def _magic_order(btf: bytes) -> str | None:
    if int.from_bytes(btf[:2], "little") == _BTF_MAGIC:
        return "little"
    if int.from_bytes(btf[:2], "big") == _BTF_MAGIC:
        return "big"
    return None


def _var_symbol(obj: ElfObject, name: str) -> Symbol | None:
    # libbpf's find_elf_var_sym: a global or weak data object of that name
    for sym in obj.symbols:
        if sym.type == "STT_OBJECT" and sym.bind in ("STB_GLOBAL", "STB_WEAK") and sym.name == name:
            return sym
    return None


def exposed(spec: Spec, obj: ElfObject, var_id: int) -> bool:
    """Whether a DATASEC VAR is visible to user space: global linkage, default visibility.

    libbpf turns hidden/internal symbols into static VARs, and static VARs get no symbol
    offset we could trust; neither is part of the object's interface.
    """
    var = spec[var_id]
    if not isinstance(var, Var) or var.linkage != Linkage.GLOBAL:
        return False
    sym = _var_symbol(obj, var.name)
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
                sym = _var_symbol(obj, var.name)
                if sym is None:
                    raise BTFError(f"no ELF symbol for VAR '{var.name}'", where=where)
                offset = sym.value
            infos.append(dataclasses.replace(vsi, offset=offset))
        infos.sort(key=lambda v: v.offset)
        fixed = dataclasses.replace(t, size=size, vars=tuple(infos))
        if fixed != t:
            types[t.id] = fixed
            changed = True
    return dataclasses.replace(spec, types=tuple(types)) if changed else spec
