"""gen/ebpf_gen/elf.py reads ELF with struct (pyelftools costs ~35 ms of import per run); pyelftools
stays as the oracle: on every object the tests can build, in both byte orders, our sections,
symbols and .BTF bytes must equal what pyelftools reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from ebpf_gen.elf import read_elf
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from .conftest import REPO, compile_bpf

# (corpus programs on a dumped vmlinux.h are left to test_corpus.py, which builds that header)
SOURCES = sorted(
    src
    for src in [
        *REPO.glob("examples/*.bpf.c"),
        *REPO.glob("tests/golden/*.bpf.c"),
        *REPO.glob("tests/corpus/*.bpf.c"),
        *REPO.glob("tests/source_snippets/*.bpf.c"),
    ]
    if '"vmlinux.h"' not in src.read_text()
)


# Section types pyelftools leaves as numbers; readelf (and we) name them.
_LLVM_TYPES = {0x6FFF4C00: "SHT_LLVM_ODRTAB", 0x6FFF4C01: "SHT_LLVM_LINKER_OPTIONS",
               0x6FFF4C03: "SHT_LLVM_ADDRSIG"}


def _oracle(path: Path) -> tuple[str, list[tuple[object, ...]], list[tuple[object, ...]], bytes]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        order = "little" if elf.little_endian else "big"
        sections = [
            (i, s.name, s["sh_size"], s["sh_flags"], _LLVM_TYPES.get(s["sh_type"], s["sh_type"]))
            for i, s in enumerate(elf.iter_sections())
        ]
        symbols = []
        for sec in elf.iter_sections():
            if not isinstance(sec, SymbolTableSection):
                continue
            for sym in sec.iter_symbols():
                shndx = sym["st_shndx"]
                index = shndx if isinstance(shndx, int) else 0
                symbols.append(
                    (
                        sym.name,
                        elf.get_section(index).name if index else "",
                        index,
                        sym["st_value"],
                        sym["st_size"],
                        sym["st_info"]["bind"],
                        sym["st_info"]["type"],
                        sym["st_other"]["visibility"],
                    )
                )
        btf = elf.get_section_by_name(".BTF")
        return order, sections, symbols, btf.data() if btf is not None else b""


@pytest.mark.parametrize("target", ["bpfel", "bpfeb"])
def test_reader_matches_pyelftools(tmp_path: Path, target: str) -> None:
    assert len(SOURCES) > 40, "the corpus the oracle runs over went missing"
    for src in SOURCES:
        extra = ("-I", str(src.parent))
        obj = compile_bpf(src, tmp_path / f"{src.stem}.{target}.o", target=target, extra=extra)
        ours = read_elf(obj)
        order, sections, symbols, btf = _oracle(obj)
        assert ours.byteorder == order, src
        assert [(s.index, s.name, s.size, s.flags, s.type) for s in ours.sections] == sections
        assert [
            (s.name, s.section, s.section_index, s.value, s.size, s.bind, s.type, s.visibility)
            for s in ours.symbols
        ] == symbols, src
        assert ours.btf == btf, src
