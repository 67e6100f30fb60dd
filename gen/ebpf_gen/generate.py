"""The pipeline for one BPF program: compile both byte orders, read, analyse, render, write.

Outputs are built in memory first and written all at once (temp files in the output dir,
fsync, then os.replace), so a failure anywhere leaves existing outputs as they were.
Heavy imports (jinja2, libclang) happen inside the functions that need them:
``ebpf-gen generate`` with nothing to do must stay well under a second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from .build import SUFFIX, Built, object_name
from .compile import BYTEORDER, TARGETS, tool_version
from .config import rebase_flags
from .errors import ConfigError, InternalError, LayoutError, OutputError, guarded
from .model import Diagnostic, ObjectModel, no_source_diagnostics
from .runtime.arch import ARCHES, DEFAULT_ARCHES

_PKG = __name__.rpartition(".")[0]
_EXAMPLE = {"bpfel": "x86 or arm64", "bpfeb": "s390"}


@dataclass(frozen=True)
class Options:
    output_dir: Path = Path("generated")
    stem: str | None = None
    types: tuple[str, ...] = ()
    all_types: bool = False
    # (map name, C type): an event map's type declared, not inferred (--map-type)
    map_types: tuple[tuple[str, str], ...] = ()
    targets: tuple[str, ...] = TARGETS
    # __TARGET_ARCH_* names compiled for (runtime/arch.py); per-arch extra cflags
    arches: tuple[str, ...] = DEFAULT_ARCHES
    arch_cflags: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # parallel clang runs (None: EBPF_GEN_JOBS, else the CPU count)
    jobs: int | None = None
    cc: str = "clang"
    strip: bool = True
    cflags: tuple[str, ...] = ()
    # Where relative paths in cflags start (the cwd for the CLI, pyproject's directory for
    # the config); None: the cwd
    cflags_dir: Path | None = None
    # How to regenerate, written into the module docstring
    command: str = "ebpf-gen"


@dataclass(frozen=True)
class Result:
    stem: str
    files: dict[str, bytes]  # output file name -> content, in write order (.py last)
    diagnostics: tuple[Diagnostic, ...]
    inputs: tuple[Path, ...] = field(default=())  # source + headers, for the up-to-date cache
    warnings: str = ""  # clang's warnings of a successful compile, as clang printed them


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


def _import_later_steps() -> None:
    try:
        from . import objspec, render  # noqa: F401
        from .source import _clang, capacity, infer  # noqa: F401
    except Exception:  # the step that needs the module raises it, in context
        pass


def build_from_source(source: Path, opts: Options) -> Result:
    stem = check_stem(opts.stem or default_stem(source))
    if not opts.targets:
        raise ConfigError("no --target given")
    for t in opts.targets:
        if t not in TARGETS:
            raise ConfigError(f"unknown target {t!r} (expected bpfel and/or bpfeb)")
    # clang runs in the source's directory: relative paths the user meant from elsewhere
    # are rewritten to name the same files from there (and the parse sees the same flags)
    cflags = rebase_flags(opts.cflags, opts.cflags_dir or Path.cwd(), source.resolve().parent)
    arch_cflags = {a: rebase_flags(f, opts.cflags_dir or Path.cwd(), source.resolve().parent)
                   for a, f in opts.arch_cflags}
    opts = dataclasses.replace(opts, cflags=cflags, cflags_dir=source.resolve().parent)
    from .build import Pool, build_objects, resolve_jobs
    from .runtime.arch import ARCHES

    # A byte order none of the architectures runs in: said, not silently left out
    served = [t for t in opts.targets if any(BYTEORDER[t] in ARCHES[a] for a in opts.arches)]
    unserved = [t for t in opts.targets if t not in served]
    if not served:
        raise ConfigError(f"--arch {','.join(opts.arches)} has no architecture for "
                          f"{' or '.join(unserved)}", where=str(source))
    pool = Pool(resolve_jobs(opts.jobs))
    # The steps after the first compile import about 0.1 s of modules (the source parse,
    # the model, the renderer): made by a thread while clang runs and this one only waits.
    # (--jobs 1 keeps every step in turn.)
    warm = threading.Thread(target=_import_later_steps, name="ebpf-gen-imports")
    if pool.parallel:
        warm.start()
    parsed: dict[str, Future[object]] = {}
    # The libclang parse costs as much as a compile on vmlinux.h. A source that defines an
    # event map nearly always needs it (clang leaves the events' type out of BTF), so its
    # parse starts at once, in a thread of its own beside the pool's compiles, for the first
    # byte order that has an architecture (the one analyze() reads), instead of after the
    # first object. With a CPU to spare it is off the critical path (core_task on
    # vmlinux.h, one byte order on two CPUs: 1.46 -> 1.10 s); with none (two compiles on two
    # CPUs) the three share the CPUs and end no later than before. Other sources parse once
    # the first object says they must (needs_parse). A guess the object proves wrong costs
    # CPU, never the result: it is the very parse analyze() would make.
    guess = BYTEORDER[served[0]] if pool.parallel and _names_event_map(source) else None
    early: ThreadPoolExecutor | None = None
    guessed: Future[object] | None = None
    if guess is not None:
        early = ThreadPoolExecutor(1, thread_name_prefix="ebpf-gen-parse")
        guessed = early.submit(_parse, source, opts, guess)

    def start_parse(order: str, data: bytes) -> None:
        # Not guessed (or not for this order): the parse starts here, beside the compiles
        from .objspec import object_model
        from .source import needs_parse

        model = object_model(data, f"{source} ({SUFFIX[order]})")
        if needs_parse(model, opts.types, dict(opts.map_types)):
            parsed[order] = guessed if guessed is not None and order == guess else pool.submit(
                lambda: _parse(source, opts, model.btf.byteorder))

    try:
        with tempfile.TemporaryDirectory(prefix="ebpf-gen-", ignore_cleanup_errors=True) as tmp:
            try:
                built = build_objects(source, Path(tmp), stem, targets=opts.targets,
                                      arches=opts.arches, arch_cflags=arch_cflags, cc=opts.cc,
                                      strip=opts.strip, cflags=opts.cflags, pool=pool,
                                      on_primary=start_parse)
            except BaseException:
                # An error raised while other clang runs still write into tmp (the primary
                # object refused, say) must wait for them: removing tmp under them failed
                # with "Directory not empty", and that replaced the user's error.
                pool.close()
                if warm.is_alive():
                    warm.join()  # no import left running into the interpreter's exit
                raise
        if warm.is_alive():
            warm.join()
        from .objspec import object_model
        from .source import analyze
        failures = built
        built = {o: b for o, b in built.items() if b.objects}
        models: dict[str, ObjectModel] = {}
        for order, b in built.items():
            target = SUFFIX[order]
            # Named after the source: the temporary object is gone when the user reads it
            with guarded(f"{source} ({target})"):
                models[order] = object_model(b.objects[b.primary][1], f"{source} ({target})")
        with guarded(str(source)):
            if len(models) == 2:
                check_same_layout(models["little"], models["big"], where=str(source))
            first = next(iter(built))
            unit = parsed[first].result() if first in parsed else None
            model = analyze(source, opts.cflags, models[first], opts.types, cc=opts.cc,
                            map_types=dict(opts.map_types), unit=unit)
    finally:
        pool.close()
        if early is not None:
            early.shutdown(wait=True)  # a guess nobody took still runs: no thread outlives us
    with guarded(str(source)):
        from .source.capacity import capacity_warnings

        model = _with_diagnostics(model, capacity_warnings(model, display_path(source)))
        model = _with_diagnostics(model, _arch_diagnostics(failures, source))
        model = _with_diagnostics(model, [Diagnostic(
            display_path(source), 0, 0, "warning",
            f"no {t} object: --arch {','.join(opts.arches)} names no "
            f"{BYTEORDER[t]}-endian architecture (e.g. {_EXAMPLE[t]})") for t in unserved])
        objects = {k: v for b in built.values() for k, v in b.objects.items()}
        inputs = tuple(dict.fromkeys(p for b in built.values() for p in b.inputs))
        warnings = "".join(dict.fromkeys(b.warnings for b in built.values() if b.warnings))
        rendered = _render(stem, model, objects, display_path(source), opts, inputs)
        return dataclasses.replace(rendered, warnings=warnings)


# Map types whose events clang leaves out of BTF: a source naming one will need its parse.
_EVENT_MAP_WORDS = (b"RINGBUF", b"PERF_EVENT_ARRAY")


def _names_event_map(source: Path) -> bool:
    """Whether the source file itself names an event map type: its parse is started before
    any object exists. Only that file is read (a few KiB): an event map defined in a header
    is found later, from the object, as before."""
    try:
        text = source.read_bytes()
    except OSError:
        return False  # the compile says why
    return any(word in text for word in _EVENT_MAP_WORDS)


def _parse(source: Path, opts: Options, byteorder: str) -> object:
    """The libclang parse analyze() reads (its TranslationUnit), as the compiles see it."""
    from .source import parse

    return parse(source, opts.cflags, byteorder=byteorder, cc=opts.cc)


def _arch_diagnostics(built: Mapping[str, Built], source: Path) -> list[Diagnostic]:
    """One warning per byte order with architectures left out: the module refuses them."""
    out: list[Diagnostic] = []
    where = display_path(source)
    for order, b in built.items():
        if b.failed:
            names = ", ".join(a for a, _ in b.failed)
            # clang names the source by its absolute path; the warning by the display one
            why = b.failed[0][1].replace(str(source.resolve()), where)
            out.append(Diagnostic(
                where, 0, 0, "warning",
                f"no {SUFFIX[order]} object for {names}: it does not compile for them "
                f"({why}); the module refuses them there (give their headers with "
                "--arch-cflags ARCH=-I...)"))
    return out


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
        if opts.map_types:
            from .source import declare_event_types

            model = declare_event_types(model, dict(opts.map_types), where)
            typed = {m.name for m in model.maps if m.event_type is not None}
            for name, ctype in opts.map_types:
                if name not in typed:
                    raise ConfigError(f"--map-type {name}={ctype}: '{ctype}' is not in the "
                                      "object's BTF (generate from the source to lay it out "
                                      "from there)", where=where)
        model = _with_diagnostics(model, no_source_diagnostics(model, display or where))
        order = model.btf.byteorder
        return _render(stem, model, {order: (object_name(stem, order), data)}, None, opts,
                       inputs)


def _with_diagnostics(model: ObjectModel, extra: Sequence[Diagnostic]) -> ObjectModel:
    return dataclasses.replace(model, diagnostics=(*model.diagnostics, *extra))


def _analyze(source: Path, opts: Options, model: ObjectModel) -> ObjectModel:
    from .source import analyze

    return analyze(source, opts.cflags, model, opts.types, cc=opts.cc,
                   map_types=dict(opts.map_types))


def _render(
    stem: str,
    model: ObjectModel,
    objects: Mapping[str, tuple[str, bytes]],  # files key -> (file name, bytes)
    source: str | None,
    opts: Options,
    inputs: tuple[Path, ...],
) -> Result:
    from .render import module_context, render_module

    files: dict[str, bytes] = {}
    names: dict[str, tuple[str, str]] = {}  # the module lists these sorted by key itself
    # Keys: "little", "little/arm64", "big", "big/s390", ... Written and reported
    # little-endian first (the objects users load), then big-endian.
    for key in sorted(objects, key=lambda k: (not k.startswith("little"), k)):
        name, data = objects[key]
        names[key] = (name, hashlib.sha256(data).hexdigest())
        files[name] = data  # architectures with the same bytes share one file
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


def stale_outputs(output_dir: Path, stem: str, files: Mapping[str, bytes]) -> list[Path]:
    """Object files of ``stem`` in ``output_dir`` that this generation no longer writes.

    The set of objects changes with the source: a program that starts reading ``pt_regs``
    gets per-architecture objects (``probe_bpfel_x86.o``) in place of ``probe_bpfel.o``, and
    the other way round. Left in place, the old file would be committed beside the new ones
    and loaded by nothing. Only names this generator could have written for ``stem`` match
    (``STEM_bpfel.o``, ``STEM_bpfeb_s390.o``, ...), never another stem's files.
    """
    known = {object_name(stem, order, arch) for order in SUFFIX for arch in (None, *ARCHES)}
    try:
        present = {p.name for p in output_dir.iterdir() if p.is_file()}
    except OSError:
        return []
    return sorted(output_dir / name for name in (present & known) - set(files))


def remove_outputs(paths: Sequence[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            raise OutputError(f"cannot remove stale output: {e.strerror}", where=str(path)) from e


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
    base = str((opts.cflags_dir or Path.cwd()).resolve())
    settings = [opts.stem, opts.types, opts.all_types, opts.map_types, opts.targets, opts.cc,
                opts.strip, opts.cflags, base, opts.command, str(source), opts.arches,
                opts.arch_cflags]
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
