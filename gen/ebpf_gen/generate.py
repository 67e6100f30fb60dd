"""The pipeline for one BPF program: compile both byte orders, read, analyse, render, write.

Outputs are built in memory first and written all at once (temp files in the output dir,
fsync, then os.replace), so a failure anywhere leaves existing outputs as they were.
Heavy imports (jinja2, libclang) happen inside the functions that need them:
``ebpf-gen generate`` with nothing to do must stay well under a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .compile import BYTEORDER, TARGETS, compile_bpf, tool_version
from .errors import ConfigError, InternalError, LayoutError, OutputError, guarded
from .model import Diagnostic, ObjectModel, no_source_diagnostics

_PKG = __name__.rpartition(".")[0]
_SUFFIX = {"little": "bpfel", "big": "bpfeb"}


@dataclass(frozen=True)
class Options:
    output_dir: Path = Path("generated")
    stem: str | None = None
    types: tuple[str, ...] = ()
    all_types: bool = False
    targets: tuple[str, ...] = TARGETS
    cc: str = "clang"
    strip: bool = True
    cflags: tuple[str, ...] = ()
    # How to regenerate, written into the module docstring
    command: str = "ebpf-gen"


@dataclass(frozen=True)
class Result:
    stem: str
    files: dict[str, bytes]  # output file name -> content, in write order (.py last)
    diagnostics: tuple[Diagnostic, ...]
    inputs: tuple[Path, ...] = field(default=())  # source + headers, for the up-to-date cache


def default_stem(path: Path) -> str:
    name = path.name
    for suffix in (".bpf.c", ".c", "_bpfel.o", "_bpfeb.o", ".bpf.o", ".o"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_").replace(".", "_")


def check_stem(stem: str) -> str:
    if not stem.isidentifier():
        raise ConfigError(f"stem {stem!r} is not a valid Python module name (use --stem)")
    return stem


def display_path(path: Path) -> str:
    """``path`` relative to the cwd (the project root), with '/': no absolute paths in output."""
    try:
        absolute = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: reading it fails with a clear error
        absolute = path.absolute()
    return Path(os.path.relpath(absolute, Path.cwd().resolve())).as_posix()


def build_from_source(source: Path, opts: Options) -> Result:
    from .elf import read_bytes
    from .objspec import object_model

    stem = check_stem(opts.stem or default_stem(source))
    if not opts.targets:
        raise ConfigError("no --target given")
    for t in opts.targets:
        if t not in TARGETS:
            raise ConfigError(f"unknown target {t!r} (expected bpfel and/or bpfeb)")
    models: dict[str, ObjectModel] = {}
    objects: dict[str, bytes] = {}
    inputs: tuple[Path, ...] = ()
    with tempfile.TemporaryDirectory(prefix="ebpf-gen-") as tmp:
        for target in opts.targets:
            out = Path(tmp) / f"{stem}_{target}.o"
            result = compile_bpf(
                source,
                out,
                target=target,
                cc=opts.cc,
                strip="llvm-strip" if opts.strip else None,
                cflags=opts.cflags,
            )
            inputs = result.inputs
            data = read_bytes(out)
            # Named after the source: the temporary object is gone when the user reads it
            with guarded(f"{source} ({target})"):
                models[BYTEORDER[target]] = object_model(data, f"{source} ({target})")
            objects[BYTEORDER[target]] = data
    with guarded(str(source)):
        if len(models) == 2:
            check_same_layout(models["little"], models["big"], where=str(source))
        primary = models.get("little") or models["big"]
        model = _analyze(source, opts, primary)
        from .source.capacity import capacity_warnings

        model = _with_diagnostics(model, capacity_warnings(model, display_path(source)))
        return _render(stem, model, objects, display_path(source), opts, inputs)


def build_from_object(path: Path, opts: Options) -> Result:
    from .elf import read_bytes

    stem = check_stem(opts.stem or default_stem(path))
    data = read_bytes(path)
    return build_from_bytes(data, str(path), opts, stem=stem, display=display_path(path),
                            inputs=(path.resolve(),))


def build_from_bytes(
    data: bytes,
    where: str,
    opts: Options,
    *,
    stem: str | None = None,
    display: str | None = None,
    inputs: tuple[Path, ...] = (),
) -> Result:
    """``--object`` on bytes already read: what the fuzz target drives. Errors name ``where``."""
    from .objspec import object_model

    stem = check_stem(stem or opts.stem or "module")
    with guarded(where):
        model = object_model(data, where)
        model = _with_diagnostics(model, no_source_diagnostics(model, display or where))
        return _render(stem, model, {model.btf.byteorder: data}, None, opts, inputs)


def _with_diagnostics(model: ObjectModel, extra: Sequence[Diagnostic]) -> ObjectModel:
    import dataclasses

    return dataclasses.replace(model, diagnostics=(*model.diagnostics, *extra))


def _analyze(source: Path, opts: Options, model: ObjectModel) -> ObjectModel:
    from .source import analyze

    return analyze(source, opts.cflags, model, opts.types, cc=opts.cc)


def _render(
    stem: str,
    model: ObjectModel,
    objects: Mapping[str, bytes],
    source: str | None,
    opts: Options,
    inputs: tuple[Path, ...],
) -> Result:
    from .render import module_context, render_module

    files: dict[str, bytes] = {}
    names: dict[str, tuple[str, str]] = {}
    for order in ("little", "big"):
        if order in objects:
            name = f"{stem}_{_SUFFIX[order]}.o"
            files[name] = objects[order]
            names[order] = (name, hashlib.sha256(objects[order]).hexdigest())
    context = module_context(
        model,
        stem=stem,
        source=source,
        objects=names,
        types=opts.types,
        all_types=opts.all_types,
    )
    text = render_module(context)
    check_compiles(text, f"{stem}.py")
    files[f"{stem}.py"] = text.encode()
    return Result(stem, files, model.diagnostics, inputs)


def check_compiles(text: str, name: str) -> None:
    """Refuse a module Python cannot compile (a type nested past the parser's limits):
    it must never be written. The error names the class the failing line belongs to."""
    try:
        compile(text, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        line = getattr(e, "lineno", None)
        what = getattr(e, "msg", None) or str(e) or type(e).__name__
        near = ""
        if line:
            lines = text.splitlines()[:line]
            owner = next((ln for ln in reversed(lines) if ln.startswith("class ")), "")
            near = f" in {owner[6:].split('(')[0].split(':')[0]}" if owner else ""
            near += f" (line {line})"
        # The type walks bound nesting well below the parser's limits, so this is a bug
        # (an InternalError, as the fuzz target counts it) that must still write nothing.
        raise InternalError(
            f"the generated module {name} would not compile{near}: {what}; "
            "is a type nested too deeply?"
        ) from e


def check_same_layout(le: ObjectModel, be: ObjectModel, *, where: str) -> None:
    """Both byte orders must describe the same types, maps, programs and variables."""
    if len(le.btf) != len(be.btf):
        raise LayoutError(
            f"bpfel BTF has {len(le.btf)} types, bpfeb BTF has {len(be.btf)}", where=where
        )
    for a, b in zip(le.btf.types, be.btf.types, strict=True):
        if a != b:
            name = f" '{a.name}'" if a.name else ""
            detail = ""
            sa, sb = getattr(a, "size", None), getattr(b, "size", None)
            if sa != sb:
                detail = f": size {sa} in bpfel, {sb} in bpfeb"
            elif a.kind != b.kind or a.name != b.name:
                detail = f": {b.kind.name} '{b.name}' in bpfeb"
            raise LayoutError(
                f"type id {a.id} ({a.kind.name}{name}) differs between bpfel and bpfeb{detail}",
                where=where,
            )
    for what, x, y in (
        ("maps", le.maps, be.maps),
        ("programs", le.programs, be.programs),
        ("variables", le.variables, be.variables),
    ):
        if x != y:
            raise LayoutError(f"{what} differ between bpfel and bpfeb", where=where)


# -- writing ---------------------------------------------------------------------------------


def changed_files(output_dir: Path, files: Mapping[str, bytes]) -> list[Path]:
    """Outputs that differ from (or are missing in) ``output_dir``."""
    changed = []
    for name, data in files.items():
        target = output_dir / name
        try:
            same = target.read_bytes() == data
        except OSError:
            same = False
        if not same:
            changed.append(target)
    return changed


def write_outputs(output_dir: Path, files: Mapping[str, bytes]) -> None:
    """Write all ``files`` into ``output_dir`` or none of them.

    Each previous output is kept as a hard-linked backup until every new file is in place,
    so a rename failing halfway (a target that is a directory, a full disk) rolls back.
    """
    where = str(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory: {e.strerror}", where=where) from e
    temps: list[tuple[str, Path]] = []
    done: list[tuple[Path, Path | None]] = []  # (target, backup of what it replaced)
    try:
        for name, data in files.items():
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=output_dir)
            temps.append((name, Path(tmp_name)))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would make generated files private
        for name, tmp in temps:
            target = output_dir / name
            backup: Path | None = None
            if target.is_file() and not target.is_symlink():
                backup = Path(tempfile.mktemp(prefix=f".{name}.", suffix=".bak", dir=output_dir))
                os.link(target, backup)
            try:
                os.replace(tmp, target)
            except OSError:
                if backup is not None:
                    backup.unlink()
                raise
            done.append((target, backup))
        _fsync_dir(output_dir)
    except OSError as e:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink()
        for _, tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise OutputError(f"cannot write outputs: {e.strerror or e}", where=where) from e
    for _, backup in done:
        if backup is not None:
            with contextlib.suppress(OSError):
                backup.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- up-to-date cache --------------------------------------------------------------------------

CACHE_DIR = ".ebpf-gen-cache"


@cache
def _generator_fingerprint(strip: str | None, cc: str) -> str:
    """ebpf-gen's own code and templates, and the tool versions: any change regenerates."""
    import importlib.util

    h = hashlib.sha256()
    roots: list[Path] = [Path(__file__).parent]
    spec = importlib.util.find_spec(f"{_PKG}.templates")
    if spec is not None and spec.submodule_search_locations:
        roots.extend(Path(p) for p in spec.submodule_search_locations)
    for root in roots:
        for f in sorted(root.rglob("*")):
            # The runtime does not shape outputs; parts below the root, so a checkout under
            # a directory called "runtime" still counts its generator code
            rel = f.relative_to(root)
            if f.suffix in (".py", ".j2") and "runtime" not in rel.parts and f.is_file():
                h.update(rel.as_posix().encode() + b"\0" + f.read_bytes())
    h.update(tool_version(cc).encode())
    if strip:
        h.update(tool_version(strip).encode())
    return h.hexdigest()


def _fingerprint(source: Path, inputs: Sequence[str], opts: Options) -> str | None:
    h = hashlib.sha256()
    h.update(_generator_fingerprint("llvm-strip" if opts.strip else None, opts.cc).encode())
    settings = [opts.stem, opts.types, opts.all_types, opts.targets, opts.cc, opts.strip,
                opts.cflags, opts.command, str(source)]
    h.update(json.dumps(settings, default=list).encode())
    for name in (str(source), *inputs):
        try:
            h.update(name.encode() + b"\0" + Path(name).read_bytes())
        except OSError:
            return None  # a header went away: regenerate
    return h.hexdigest()


def _cache_file(root: Path, stem: str) -> Path:
    return root / CACHE_DIR / f"{stem}.json"


def up_to_date(root: Path, source: Path, stem: str, opts: Options) -> bool:
    """Whether the outputs of ``source`` were generated from exactly the current inputs."""
    try:
        entry = json.loads(_cache_file(root, stem).read_text())
        inputs = [str(p) for p in entry["inputs"]]
        outputs: dict[str, str] = entry["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if entry.get("fingerprint") != _fingerprint(source, inputs, opts):
        return False
    for name, digest in outputs.items():
        try:
            data = (opts.output_dir / name).read_bytes()
        except OSError:
            return False
        if hashlib.sha256(data).hexdigest() != digest:
            return False
    return True


def record(root: Path, source: Path, result: Result, opts: Options) -> None:
    """Remember the inputs of a generated source; a cache that cannot be written is no error."""
    inputs = [str(p) for p in result.inputs if str(p) != str(source)]
    fp = _fingerprint(source, inputs, opts)
    if fp is None:
        return
    entry = {
        "fingerprint": fp,
        "inputs": inputs,
        "outputs": {n: hashlib.sha256(d).hexdigest() for n, d in result.files.items()},
    }
    path = _cache_file(root, result.stem)
    with contextlib.suppress(OSError):
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(entry, indent=1, sort_keys=True))
        os.replace(tmp, path)
