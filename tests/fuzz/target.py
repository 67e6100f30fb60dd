"""The fuzz target shared by ``make fuzz`` (atheris) and the bounded pass in the test suite.

One input is the bytes of an object file; it goes through everything ``ebpf-gen --object``
does before writing: ELF -> BTF -> model -> collected types -> rendered module, which the
generator itself compiles before handing it back. The only acceptable failure is the
project's error (``GenError``); anything else, or a module that does not compile, is a bug.

Mutations are structure-aware: most land in the .BTF type section and write small type ids,
kinds and sizes there, because that is where byte-level noise alone rarely reaches past the
decoder's checks (cycles, deep chains and kind confusions all need a plausible type id).
"""

from __future__ import annotations

import os
import random
import struct
import subprocess
import tempfile
from pathlib import Path

from ebpf_gen.errors import GenError, InternalError
from ebpf_gen.generate import Options, build_from_bytes

ROOT = Path(__file__).resolve().parents[2]
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
SEED_CACHE = ROOT / "build" / "fuzz-seeds"
# C files of the test suite compiled into seeds: every kind clang emits, every layout case.
SEED_SOURCES = ("tests/corpus/*.bpf.c", "tests/golden/*.bpf.c", "tests/btf_snippets/*.bpf.c")
# --all-types: every named type is laid out and rendered, not only those maps reach
_OPTIONS = Options(stem="fuzz", all_types=True, command="ebpf-gen --object fuzz.o --all-types")


class Unexpected(AssertionError):
    """What the target reports: an exception other than GenError, with the input's summary."""


def run_one(data: bytes) -> str | None:
    """Generate from ``data``; the module text, or None when the generator refused it with
    the project's error. Raises whatever else the generator raised: InternalError (its
    safety net caught a bug; the cause is chained), including a module Python cannot
    compile (the generator compiles every module before returning it), and Unexpected
    for an error message that is not one line naming the input or a module that fails
    when imported."""
    try:
        result = build_from_bytes(data, "fuzz.o", _OPTIONS)
    except InternalError:
        raise
    except GenError as e:
        text = str(e)  # what a user reads
        if not text.isprintable() or not text.startswith("fuzz.o: "):
            raise Unexpected(f"error message is not one line naming the file: {text!r}") from e
        return None
    module = result.files["fuzz.py"].decode()
    # Imported as a user would: its layout checks run, its runtime imports resolve
    try:
        exec(compile(module, "fuzz.py", "exec"), {"__name__": "fuzz"})
    except Exception as e:
        raise Unexpected(f"generated module fails at import: {type(e).__name__}: {e}") from e
    return module


# Failure classes owned by other engineers' open work, named in one place with where they
# are tracked. Only `make fuzz --allow-known` (a long run that must get past them) skips
# these; the test suite's pass, and make fuzz by default, count them as failures, so each
# entry should go as soon as its fix lands (check after every rebase).
KNOWN_OPEN: dict[str, str] = {
    # Empty: ARENA (i9) and ENUM64 (i14/i9) were listed here until their fixes landed on main;
    # their inputs are regressions now (tests/fuzz/regressions/arena-map-type.o,
    # enum64-member.o). Add "owner class": "message signature" lines only for open work.
}


def known_open(e: BaseException) -> str | None:
    """The KNOWN_OPEN entry ``e`` matches, if any."""
    text = str(e)
    return next((k for k, sig in KNOWN_OPEN.items() if sig in text), None)


# -- seeds ------------------------------------------------------------------------------


def _compile_seed(src: Path, out: Path, target: str) -> bool:
    cmd = ["clang", "-O2", "-g", "-target", target, "-D__TARGET_ARCH_x86",
           "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(out)]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def seed_objects(*, compile_sources: bool = True) -> dict[str, bytes]:
    """name -> bytes: generated/*.o, the test C files compiled (cached in build/fuzz-seeds,
    keyed by the source's content), the failure classes of tests/fuzz/cases.py and any
    crasher saved under tests/fuzz/regressions/."""
    import hashlib

    seeds: dict[str, bytes] = {}
    for p in sorted((ROOT / "generated").glob("*.o")):
        seeds[f"generated/{p.name}"] = p.read_bytes()
    if compile_sources:
        from concurrent.futures import ThreadPoolExecutor

        SEED_CACHE.mkdir(parents=True, exist_ok=True)
        jobs = []
        for pattern in SEED_SOURCES:
            for src in sorted(ROOT.glob(pattern)):
                digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
                for target in ("bpfel", "bpfeb"):
                    out = SEED_CACHE / f"{src.name}.{target}.{digest}.o"
                    jobs.append((f"{src.relative_to(ROOT)} ({target})", src, target, out))

        def build(job: tuple[str, Path, str, Path]) -> None:
            _, src, target, out = job
            if out.exists():
                return
            with tempfile.TemporaryDirectory() as tmp:
                obj = Path(tmp) / "seed.o"
                if _compile_seed(src, obj, target):  # a snippet meant to fail is no seed
                    obj.replace(out)

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(pool.map(build, jobs))  # clang runs in parallel: ~90 compiles when cold
        for name, _, _, out in jobs:
            if out.exists():
                seeds[name] = out.read_bytes()
    from .cases import CASES

    for name, case in sorted(CASES.items()):
        seeds[f"cases/{name}"] = case.build()
    for p in sorted(REGRESSIONS.glob("*.o")):
        seeds[f"regressions/{p.name}"] = p.read_bytes()
    return seeds


# -- mutations --------------------------------------------------------------------------


def btf_span(data: bytes) -> tuple[int, int, str] | None:
    """(start, end, struct byte-order char) of the .BTF type section inside an ELF object."""
    try:
        if data[:4] != b"\x7fELF" or data[5] not in (1, 2):
            return None
        o = "<" if data[5] == 1 else ">"
        shoff, = struct.unpack_from(o + "Q", data, 40)
        shnum, shstrndx = struct.unpack_from(o + "HH", data, 60)
        hdrs = [struct.unpack_from(o + "IIQQQQIIQQ", data, shoff + 64 * i) for i in range(shnum)]
        stroff, strsize = hdrs[shstrndx][4], hdrs[shstrndx][5]
        names = data[stroff : stroff + strsize]
        for h in hdrs:
            end = names.find(b"\0", h[0])
            if names[h[0] : end] == b".BTF":
                base = h[4]
                hdr_len, type_off, type_len = struct.unpack_from(o + "III", data, base + 4)
                start = base + hdr_len + type_off
                return start, min(start + type_len, len(data)), o
    except (struct.error, IndexError, OverflowError, ValueError):
        return None  # the mutator is fuzzed too: anything it cannot walk gets byte noise
    return None


_INTERESTING = (0, 1, 2, 3, 4, 7, 8, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
# Kinds whose records have the same shape, so swapping one for another keeps the stream
# decodable and reaches the code past the decoder: no trailer; struct/union.
_SAME_SHAPE = ((2, 7, 8, 9, 10, 11, 12, 16, 18), (4, 5))
_FIXED = {1: 1, 3: 3, 14: 1, 17: 1}
_PER_VLEN = {4: 3, 5: 3, 6: 2, 19: 3, 13: 2, 15: 3}


def btf_fields(data: bytes, span: tuple[int, int, str]) -> dict[str, list[int]]:
    """Byte offsets of the words of each role in the type section: "ref" (a type id),
    "info", "size" (sizes, counts, offsets). Stops at the first record it cannot walk."""
    start, end, o = span
    nw = max(0, (min(end, len(data)) - start) // 4)
    if start < 0 or nw == 0:
        return {"ref": [], "info": [], "size": [], "ntypes": [1]}
    w = struct.unpack_from(f"{o}{nw}I", data, start)
    roles: dict[str, list[int]] = {"ref": [], "info": [], "size": [], "ntypes": [1]}
    i = 0
    while i + 3 <= nw:
        info, kind, vlen = w[i + 1], w[i + 1] >> 24 & 0x1F, w[i + 1] & 0xFFFF
        at = lambda k: start + 4 * k  # noqa: E731
        roles["info"].append(at(i + 1))
        roles["ntypes"][0] += 1
        if kind in (2, 8, 9, 10, 11, 12, 14, 17, 18):
            roles["ref"].append(at(i + 2))
        elif kind in (1, 4, 5, 6, 15, 16, 19):
            roles["size"].append(at(i + 2))
        trailer = i + 3
        if kind == 3:
            roles["ref"] += [at(trailer), at(trailer + 1)]
            roles["size"].append(at(trailer + 2))
        elif kind in (4, 5):
            for m in range(vlen):
                roles["ref"].append(at(trailer + 3 * m + 1))
                roles["size"].append(at(trailer + 3 * m + 2))
        elif kind in (13, 15):
            per = _PER_VLEN[kind]
            for m in range(vlen):
                roles["ref"].append(at(trailer + per * m + (0 if kind == 15 else 1)))
        if kind > 19:
            break
        i = trailer + _FIXED.get(kind, 0) + _PER_VLEN.get(kind, 0) * vlen
        del info
    return roles


def mutate(data: bytes, rng: random.Random, *, max_size: int = 1 << 20) -> bytes:
    """One to four edits, most of them to the role-typed words of the BTF type section
    (a type id set to another type, a kind swapped for one of the same record shape, a
    size or offset changed), the rest byte noise, cuts and duplications."""
    buf = bytearray(data)
    span = btf_span(data)
    fields = btf_fields(data, span) if span else None
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            continue
        r = rng.random()
        if span and fields and r < 0.8:
            o = span[2]
            role = rng.choice(("ref", "ref", "ref", "info", "size"))
            if not fields[role]:
                continue
            at = rng.choice(fields[role])
            if at + 4 > len(buf):
                continue
            old, = struct.unpack_from(o + "I", buf, at)
            if role == "ref":
                new = rng.randrange(fields["ntypes"][0] + (1 if rng.random() < 0.1 else 0))
            elif role == "info":
                kind = old >> 24 & 0x1F
                group = next((g for g in _SAME_SHAPE if kind in g), None)
                if group and rng.random() < 0.7:
                    new = (old & 0x8000FFFF) | rng.choice(group) << 24
                else:
                    new = old ^ 0x80000000  # kind_flag: bitfield offsets, signedness
            elif rng.random() < 0.5:
                new = rng.choice(_INTERESTING)
            else:
                new = (old + rng.choice((-8, -4, -1, 1, 4, 8, 32, 64))) & 0xFFFFFFFF
            struct.pack_into(o + "I", buf, at, new)
        elif r < 0.9:
            at = rng.randrange(len(buf))
            buf[at] = rng.randrange(256)
        elif r < 0.95 and len(buf) > 8:  # cut
            a = rng.randrange(len(buf))
            del buf[a : a + rng.randint(1, 64)]
        elif len(buf) < max_size:  # duplicate a chunk
            a = rng.randrange(len(buf))
            chunk = buf[a : a + rng.randint(1, 64)]
            b = rng.randrange(len(buf))
            buf[b:b] = chunk
    return bytes(buf)
