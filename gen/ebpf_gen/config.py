"""``[tool.ebpf-gen]`` in pyproject.toml: the sources ``ebpf-gen generate`` builds.

    [tool.ebpf-gen]
    output-dir = "generated"
    cflags = ["-Wall"]

    [[tool.ebpf-gen.source]]
    path = "examples/hello.bpf.c"
    stem = "hello"            # optional, default from the file name
    types = ["struct event"]  # optional, extra types to emit
    all-types = false         # optional
    cflags = ["-DFOO"]        # optional, after the global cflags

Paths are relative to the directory holding pyproject.toml.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

_TABLE = "tool.ebpf-gen"
_TOP_KEYS = {"output-dir", "cflags", "source"}
_SOURCE_KEYS = {"path", "stem", "types", "all-types", "cflags"}


@dataclass(frozen=True)
class SourceConfig:
    path: Path  # relative to Config.root
    stem: str | None
    types: tuple[str, ...]
    all_types: bool
    cflags: tuple[str, ...]


@dataclass(frozen=True)
class Config:
    root: Path  # the directory of pyproject.toml
    file: Path
    output_dir: Path  # relative to root
    cflags: tuple[str, ...]
    sources: tuple[SourceConfig, ...]


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
        sources.append(
            SourceConfig(
                path=Path(path),
                stem=stem,
                types=_strings(raw.get("types", []), f"{swhere}: types"),
                all_types=all_types,
                cflags=_strings(raw.get("cflags", []), f"{swhere}: cflags"),
            )
        )
    return Config(pyproject.parent, pyproject, Path(output_dir), cflags, tuple(sources))
