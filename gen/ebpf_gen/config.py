"""``[tool.ebpf-gen]`` in pyproject.toml: the sources ``ebpf-gen generate`` builds.

    [tool.ebpf-gen]
    output-dir = "generated"
    cflags = ["-Wall"]
    arch = ["x86", "arm64"]   # optional: __TARGET_ARCH_* compiled for (default: see arch.py)
    arch-cflags = { arm64 = ["-Ivmlinux/arm64"] }  # optional: flags for one architecture

    [[tool.ebpf-gen.source]]
    path = "examples/hello.bpf.c"
    stem = "hello"            # optional, default from the file name
    types = ["struct event"]  # optional, extra types to emit
    all-types = false         # optional
    map-types = { events = "struct event" }  # optional: event maps' types, not inferred
    cflags = ["-DFOO"]        # optional, after the global cflags

Paths are relative to the directory holding pyproject.toml, in cflags too (``-Iinclude``
means ``<project>/include`` whatever the source's directory). ``ebpf-gen SRC`` run inside
the project applies the global ``cflags`` as well and says so (``--no-config`` to ignore).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

_TABLE = "tool.ebpf-gen"
_TOP_KEYS = {"output-dir", "cflags", "source", "arch", "arch-cflags"}
_SOURCE_KEYS = {"path", "stem", "types", "all-types", "map-types", "cflags"}


@dataclass(frozen=True)
class SourceConfig:
    path: Path  # relative to Config.root
    stem: str | None
    types: tuple[str, ...]
    all_types: bool
    cflags: tuple[str, ...]
    map_types: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Config:
    root: Path  # the directory of pyproject.toml
    file: Path
    output_dir: Path  # relative to root
    cflags: tuple[str, ...]
    sources: tuple[SourceConfig, ...]
    arches: tuple[str, ...] = ()  # () : the default set
    arch_cflags: tuple[tuple[str, tuple[str, ...]], ...] = ()  # paths relative to root


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start``."""
    for d in (start.resolve(), *start.resolve().parents):
        candidate = d / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("expected a list of strings", where=where)
    return tuple(value)


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(
            f"unknown key {extra[0]!r} (expected one of {', '.join(sorted(allowed))})", where=where
        )


def load_config(pyproject: Path) -> Config:
    where = str(pyproject)
    try:
        with open(pyproject, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", where=where) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML: {e}", where=where) from e
    table = doc.get("tool", {}).get("ebpf-gen")
    if table is None:
        raise ConfigError(f"no [{_TABLE}] table", where=where)
    if not isinstance(table, dict):
        raise ConfigError(f"[{_TABLE}] must be a table", where=where)
    twhere = f"{where}: [{_TABLE}]"
    _unknown(table, _TOP_KEYS, twhere)
    output_dir = table.get("output-dir", "generated")
    if not isinstance(output_dir, str) or not output_dir:
        raise ConfigError("output-dir must be a non-empty string", where=twhere)
    cflags = _strings(table.get("cflags", []), f"{twhere}: cflags")
    from .build import parse_arch_cflags, parse_arches

    arches: tuple[str, ...] = ()
    if "arch" in table:
        arches = parse_arches(",".join(_strings(table["arch"], f"{twhere}: arch")),
                              f"{twhere}: arch")
    raw_ac = table.get("arch-cflags", {})
    if not isinstance(raw_ac, dict):
        raise ConfigError("arch-cflags must be a table of arch = [\"flag\", ...]", where=twhere)
    arch_cflags = tuple(
        (a, _strings(f, f"{twhere}: arch-cflags.{a}")) for a, f in raw_ac.items())
    parse_arch_cflags([f"{a}=" for a, _ in arch_cflags], f"{twhere}: arch-cflags")  # names
    raw_sources = table.get("source", [])
    if not isinstance(raw_sources, list):
        raise ConfigError(
            "source must be an array of tables ([[tool.ebpf-gen.source]])", where=twhere
        )
    sources = []
    for i, raw in enumerate(raw_sources):
        swhere = f"{where}: [[{_TABLE}.source]] #{i + 1}"
        if not isinstance(raw, dict):
            raise ConfigError("expected a table", where=swhere)
        _unknown(raw, _SOURCE_KEYS, swhere)
        path = raw.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigError("path is required (a string)", where=swhere)
        stem = raw.get("stem")
        if stem is not None and not isinstance(stem, str):
            raise ConfigError("stem must be a string", where=swhere)
        all_types = raw.get("all-types", False)
        if not isinstance(all_types, bool):
            raise ConfigError("all-types must be true or false", where=swhere)
        map_types = raw.get("map-types", {})
        if not isinstance(map_types, dict) or not all(
                isinstance(v, str) and v for v in map_types.values()):
            raise ConfigError("map-types must be a table of map name = \"C type\"",
                              where=swhere)
        sources.append(
            SourceConfig(
                path=Path(path),
                stem=stem,
                types=_strings(raw.get("types", []), f"{swhere}: types"),
                all_types=all_types,
                cflags=_strings(raw.get("cflags", []), f"{swhere}: cflags"),
                map_types=tuple(map_types.items()),
            )
        )
    return Config(pyproject.parent, pyproject, Path(output_dir), cflags, tuple(sources),
                  arches, arch_cflags)


# clang options whose argument is a path: (spelling, joined forms allowed). Longest first, so
# "-isystem" is not read as "-i" + "system".
_PATH_OPTIONS = ("-idirafter", "-isystem", "-iquote", "-include", "-imacros", "-isysroot",
                 "--sysroot", "-I", "-L")


def flag_units(flags: Sequence[str]) -> list[tuple[str, str | None]]:
    """``flags`` as (option, path argument or None): ``-I x``, ``-Ix`` and ``--sysroot=x``
    alike give ("-I", "x"); every other flag is (flag, None)."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(flags):
        f = flags[i]
        i += 1
        for opt in _PATH_OPTIONS:
            if f == opt:
                if i < len(flags):
                    out.append((opt, flags[i]))
                    i += 1
                else:
                    out.append((f, None))  # clang will complain, with its own words
                break
            if f.startswith(opt) and len(f) > len(opt):
                arg = f[len(opt):]
                if opt == "--sysroot":
                    if not arg.startswith("="):
                        continue
                    arg = arg[1:]
                out.append((opt, arg))
                break
        else:
            out.append((f, None))
    return out


def _join(units: Sequence[tuple[str, str | None]]) -> tuple[str, ...]:
    out: list[str] = []
    for opt, arg in units:
        if arg is None:
            out.append(opt)
        elif opt.startswith("--"):
            out.append(f"{opt}={arg}")
        elif opt in ("-I", "-L"):
            out.append(opt + arg)
        else:
            out += [opt, arg]
    return tuple(out)


def rebase_flags(flags: Sequence[str], base: Path, to: Path) -> tuple[str, ...]:
    """``flags`` whose relative paths mean ``base/...``, rewritten relative to ``to``.

    clang runs in the source's directory (the objects must not depend on where the checkout
    lives), so a path the user gave relative to the project or the cwd is rewritten to the
    same file as seen from there, still relative.
    """
    base, to = base.resolve(), to.resolve()
    if base == to:
        return tuple(flags)
    units = []
    for opt, arg in flag_units(flags):
        if arg is not None and not os.path.isabs(arg) and not arg.startswith(("=", "$")):
            arg = os.path.relpath(base / arg, to)
        units.append((opt, arg))
    return _join(units)


def merge_flags(config: Sequence[str], user: Sequence[str], base: Path) -> tuple[str, ...]:
    """The config's flags then the user's, a config path option the user repeats dropped."""
    def key(unit: tuple[str, str | None]) -> tuple[str, str | None]:
        opt, arg = unit
        return (opt, None if arg is None else os.path.normpath(base / arg))

    given = {key(u) for u in flag_units(user) if u[1] is not None}
    kept = [u for u in flag_units(config) if u[1] is None or key(u) not in given]
    return (*_join(kept), *user)
