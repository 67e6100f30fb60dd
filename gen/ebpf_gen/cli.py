"""``ebpf-gen``: the command line.

Exit codes: 0 done (or up to date), 1 ``--check`` found stale outputs, 2 an error, printed
as one ``ebpf-gen: where: what`` line (compile errors add clang's own diagnostics below it).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, GenError

if TYPE_CHECKING:
    from .generate import Result

PROG = "ebpf-gen"
# -q 0, default 1, -v 2: progress ("wrote ...") and notes on stdout/stderr follow it; warnings
# (clang's and ebpf-gen's) and errors are printed at every level
_verbosity = 1


def _say(msg: str, level: int = 1) -> None:
    if _verbosity >= level:
        print(msg, flush=True)


def _note(msg: str, level: int = 1) -> None:
    if _verbosity >= level:
        print(f"{PROG}: {msg}", file=sys.stderr, flush=True)

_EPILOG = """\
examples:
  ebpf-gen probe.bpf.c                     compile (bpfel + bpfeb) and write generated/probe.py,
                                           generated/probe_bpfel.o, generated/probe_bpfeb.o
  ebpf-gen probe.bpf.c --output-dir pkg --stem probe_skel --type 'struct event'
  ebpf-gen probe.bpf.c -- -I include -DDEBUG=1   extra clang flags after --
  ebpf-gen --object build/probe.o          from an already compiled object (its byte order only)
  ebpf-gen generate                        every [[tool.ebpf-gen.source]] of pyproject.toml
  ebpf-gen generate --check                exit 1 listing outputs that are out of date
  ebpf-gen vmlinux -o bpf/vmlinux.h        the running kernel's types as a C header

Inside a project, the [tool.ebpf-gen] cflags of the nearest pyproject.toml apply too (their
relative paths from pyproject's directory; -v shows them, --no-config ignores them). Relative
paths in the flags given here start at the current directory.

exit status: 0 ok, 1 --check found changes, 2 error
"""

_GENERATE_EPILOG = """\
pyproject.toml:
  [tool.ebpf-gen]
  output-dir = "generated"
  cflags = ["-Wall", "-Iinclude"]

  [[tool.ebpf-gen.source]]
  path = "examples/hello.bpf.c"     # also: stem, types, all-types, cflags

Relative paths (path, output-dir, and in cflags) start at pyproject.toml's directory.
Sources whose inputs (source, headers, flags, tool and ebpf-gen versions) are unchanged since
the last run are skipped ("up to date"); the record lives in .ebpf-gen-cache/ next to
pyproject.toml. Each source prints one line: what was written, or that nothing changed.
"""


def _main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} SRC [options] [-- clang flags]\n"
        f"       {PROG} --object OBJ [options]\n"
        f"       {PROG} generate [--check]\n"
        f"       {PROG} vmlinux [-o vmlinux.h] [--btf PATH]\n"
        f"                      [--type NAME | --for SOURCE [-- clang flags]]",
        description="Generate a typed Python skeleton (ctypes types, map/program/variable "
        "handles) from a BPF C program.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("source", nargs="?", metavar="SRC", help="the BPF C source file")
    p.add_argument("--object", metavar="OBJ", type=Path, help="generate from a compiled object")
    p.add_argument("--output-dir", type=Path, default=None, help="default: generated/")
    p.add_argument("--stem", help="output name: STEM.py, STEM_bpfel.o, STEM_bpfeb.o")
    p.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="NAME",
        help="also emit this type, e.g. 'struct event' (repeatable)",
    )
    p.add_argument("--all-types", action="store_true", help="emit every named type of the BTF")
    p.add_argument(
        "--map-type",
        dest="map_types",
        action="append",
        default=[],
        metavar="MAP=TYPE",
        help="the event type of a perf/ring buffer map, e.g. events='struct event' "
        "(repeatable; instead of inferring it from the source)",
    )
    p.add_argument("--target", default="bpfel,bpfeb", help="byte orders (default: bpfel,bpfeb)")
    p.add_argument(
        "--arch", default=None, metavar="ARCH,...",
        help="__TARGET_ARCH_* to compile for; objects stay one per byte order unless the code "
        "differs (default: the [tool.ebpf-gen] arch, else x86,arm64,riscv,powerpc,loongarch,"
        "s390; known: x86, arm64, riscv, powerpc, loongarch, s390, arm, mips, sparc, arc)",
    )
    p.add_argument(
        "--arch-cflags", action="append", default=[], metavar="ARCH=FLAGS",
        help="extra clang flags for one architecture, e.g. arm64=-Ivmlinux/arm64 (repeatable)",
    )
    _jobs_arg(p)
    p.add_argument("--cc", default="clang", help="the clang to use (default: clang)")
    p.add_argument(
        "--strip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="strip DWARF with llvm-strip -g, keeping BTF (default: on)",
    )
    p.add_argument("--cflags", default="", help="extra clang flags, shell-quoted")
    p.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if outputs would change"
    )
    p.add_argument(
        "--no-config", action="store_true",
        help="ignore the [tool.ebpf-gen] cflags of the nearest pyproject.toml",
    )
    return p


def _version() -> str:
    from importlib import metadata

    from . import __version__

    try:
        version = metadata.version("ebpf-gen")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        version = __version__
    return f"{PROG} {version}"


class _VersionAction(argparse.Action):
    """argparse's "version" action, with the version read only when asked for: reading the
    installed metadata costs ~25 ms, every run's, for a flag hardly any run gives."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 **kw: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        sys.stdout.write(_version() + "\n")  # stdout, as argparse's own action writes it
        parser.exit()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action=_VersionAction)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="store_true",
                   help="also show the clang flags used and every input file read")
    g.add_argument("-q", "--quiet", action="store_true",
                   help="print only warnings and errors")


def _jobs(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _jobs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-j", "--jobs", type=_jobs, default=None,
                   help="clang runs at once (1 to 256; default: EBPF_GEN_JOBS, else the CPUs)")


def _generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} generate",
        description="Regenerate every source listed in pyproject.toml [tool.ebpf-gen].",
        epilog=_GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    p.add_argument(
        "--force", action="store_true", help="regenerate even when inputs are unchanged"
    )
    p.add_argument("--config", type=Path, help="pyproject.toml to use (default: nearest)")
    _jobs_arg(p)
    return p


def _split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


# What the generator imports beyond the runtime: (module, the distribution that provides it)
_GENERATOR_DEPS = (("jinja2", "jinja2"), ("clang", "libclang"))


def _need_generator(*, source: bool) -> None:
    """Fail with the exact install command when the generator's dependencies are missing.

    ``pip install ebpf-gen`` is the runtime alone (what a deployed app needs); generating
    needs the ``generator`` extra. --object needs no libclang (no source to parse).
    """
    import importlib.util

    wanted = [d for d in _GENERATOR_DEPS if source or d[0] != "clang"]
    missing = [dist for mod, dist in wanted if importlib.util.find_spec(mod) is None]
    if missing:
        raise ConfigError(
            f"generating needs {' and '.join(missing)}, not installed here (ebpf-gen alone is "
            f"the runtime, for deployed apps): {shlex.quote(sys.executable)} -m pip install "
            "'ebpf-gen[generator]'")


def _set_verbosity(args: argparse.Namespace) -> None:
    global _verbosity
    _verbosity = 0 if args.quiet else 2 if args.verbose else 1


def _warn(result: Result) -> None:
    if result.warnings:  # clang's own, as it printed them (file:line:col: warning: ...)
        sys.stderr.write(result.warnings if result.warnings.endswith("\n")
                         else result.warnings + "\n")
    for d in result.diagnostics:
        print(d, file=sys.stderr)
    sys.stderr.flush()


def _write(what: str, output_dir: Path, result: Result) -> None:
    """Write the outputs that differ from what is there, and say which."""
    from .generate import (
        changed_files,
        display_path,
        remove_outputs,
        stale_outputs,
        write_outputs,
    )

    changed = set(changed_files(output_dir, result.files))
    stale = stale_outputs(output_dir, result.stem, result.files)
    write_outputs(output_dir, {n: d for n, d in result.files.items()
                               if output_dir / n in changed})
    remove_outputs(stale)  # after the new files are in place: a failed write keeps the old set
    if changed:
        names = [display_path(output_dir / n) for n in result.files if output_dir / n in changed]
        _say(f"{what}: wrote {', '.join(names)}")
    if stale:
        _say(f"{what}: removed {', '.join(display_path(p) for p in stale)} (no longer generated)")
    if not changed and not stale:
        _say(f"{what}: unchanged ({len(result.files)} outputs already as generated)")


def _show_inputs(result: Result, cflags: Sequence[str]) -> None:
    import os

    if cflags:
        _note(f"clang flags: {shlex.join(cflags)}", 2)
    cwd = Path.cwd()
    for p in result.inputs:
        shown = os.path.normpath(p)  # system headers stay absolute, the project's relative
        if Path(shown).is_relative_to(cwd):
            shown = os.path.relpath(shown, cwd)
        _note(f"input: {shown}", 2)


def _out_of_date(output_dir: Path, result: Result) -> list[tuple[str, Path]]:
    """What writing ``result`` would do: ("change", file) and ("remove", stale file)."""
    from .generate import changed_files, stale_outputs

    return [*(("change", p) for p in changed_files(output_dir, result.files)),
            *(("remove", p) for p in stale_outputs(output_dir, result.stem, result.files))]


def _report_check(pending: Sequence[tuple[str, Path]]) -> int:
    from .generate import display_path

    for verb, path in pending:
        print(f"would {verb}: {display_path(path)}")
    return 1 if pending else 0


def _run_single(args: argparse.Namespace, extra: list[str]) -> int:
    from .config import find_pyproject, load_config, merge_flags, rebase_flags
    from .generate import (
        Options,
        build_from_object,
        build_from_source,
        display_path,
    )

    _set_verbosity(args)
    if (args.source is None) == (args.object is None):
        raise ConfigError("give either a C source file or --object OBJ (see --help)")
    _need_generator(source=args.source is not None)
    from .build import parse_arch_cflags, parse_arches, resolve_jobs
    from .runtime.arch import DEFAULT_ARCHES

    targets = tuple(t.strip() for t in args.target.split(",") if t.strip())
    resolve_jobs(args.jobs)  # its range, before any work
    arch_cflags = parse_arch_cflags(args.arch_cflags)
    map_types: dict[str, str] = {}
    for spec in args.map_types:
        name, sep, ctype = spec.partition("=")
        if not sep or not name.strip() or not ctype.strip():
            raise ConfigError(f"--map-type {spec!r}: expected MAP=TYPE, e.g. "
                              "events='struct event'")
        map_types[name.strip()] = ctype.strip()
    try:
        user_flags = shlex.split(args.cflags)
    except ValueError as e:
        raise ConfigError(f"--cflags: {e}") from e
    # The project's global cflags (include paths, mostly) apply to ad-hoc runs too, so the
    # "or: ebpf-gen SRC" line in a generated module reproduces it; said, never silent
    cwd = Path.cwd()
    base_flags: tuple[str, ...] = ()
    pyproject = None if args.no_config else find_pyproject(cwd)
    if pyproject is not None and args.source is not None:
        try:
            config = load_config(pyproject)
        except ConfigError:
            config = None  # a pyproject without [tool.ebpf-gen] is not ours to judge
        if config is not None and config.cflags:
            base_flags = rebase_flags(config.cflags, config.root, cwd)
            _note(f"cflags from {display_path(pyproject)}: {shlex.join(config.cflags)}"
                  " (--no-config ignores them)")
        if config is not None and args.arch is None and config.arches:
            args.arch = ",".join(config.arches)
            _note(f"arch from {display_path(pyproject)}: {args.arch} (--arch overrides)")
        if config is not None and not arch_cflags and config.arch_cflags:
            arch_cflags = tuple((a, rebase_flags(f, config.root, cwd))
                                for a, f in config.arch_cflags)
    output_dir = args.output_dir or Path("generated")
    command = [PROG]
    command += [display_path(Path(args.source))] if args.source else [
        "--object", display_path(args.object)
    ]
    command += ["--output-dir", display_path(output_dir)]
    if args.stem:
        command += ["--stem", args.stem]
    for t in args.types:
        command += ["--type", t]
    if args.all_types:
        command.append("--all-types")
    for name, ctype in map_types.items():
        command += ["--map-type", f"{name}={ctype}"]
    # Everything else that changes the outputs, so that the line reproduces them
    if args.target != "bpfel,bpfeb":
        command += ["--target", args.target]
    arches = DEFAULT_ARCHES if args.arch is None else parse_arches(args.arch)
    if arches != DEFAULT_ARCHES:
        command += ["--arch", ",".join(arches)]
    for a, f in arch_cflags:
        command += ["--arch-cflags", f"{a}={shlex.join(f)}"]
    if args.cc != "clang":
        command += ["--cc", args.cc]
    if not args.strip:
        command.append("--no-strip")
    if args.no_config:
        command.append("--no-config")
    if args.cflags:
        command += ["--cflags", args.cflags]
    if extra:
        command += ["--", *extra]
    cflags = merge_flags(base_flags, (*user_flags, *extra), cwd)
    opts = Options(
        output_dir=output_dir,
        stem=args.stem,
        types=tuple(args.types),
        all_types=args.all_types,
        map_types=tuple(map_types.items()),
        targets=targets,
        arches=arches,
        arch_cflags=arch_cflags,
        jobs=args.jobs,
        cc=args.cc,
        strip=args.strip,
        cflags=cflags,
        cflags_dir=cwd,
        command=shlex.join(command),
    )
    if args.object is not None:
        result = build_from_object(args.object, opts)
        what = display_path(args.object)
    else:
        result = build_from_source(Path(args.source), opts)
        what = display_path(Path(args.source))
    _warn(result)
    _show_inputs(result, cflags)
    if args.check:
        return _report_check(_out_of_date(output_dir, result))
    _write(what, output_dir, result)
    return 0


def _run_generate(argv: list[str]) -> int:
    import os

    from .build import resolve_jobs
    from .config import find_pyproject, load_config
    from .generate import (
        Options,
        build_from_source,
        default_stem,
        display_path,
        record,
        up_to_date,
    )
    from .runtime.arch import DEFAULT_ARCHES

    args = _generate_parser().parse_args(argv)
    _set_verbosity(args)
    resolve_jobs(args.jobs)
    _need_generator(source=True)
    pyproject = args.config or find_pyproject(Path.cwd())
    if pyproject is None:
        raise ConfigError("no pyproject.toml here or above", where=str(Path.cwd()))
    config = load_config(pyproject)
    if not config.sources:
        raise ConfigError("no [[tool.ebpf-gen.source]] entries", where=str(pyproject))
    # Paths in pyproject and in the generated modules are relative to the project root
    os.chdir(config.root)
    stale: list[tuple[str, Path]] = []
    for src in config.sources:
        opts = Options(
            output_dir=config.output_dir,
            stem=src.stem,
            types=src.types,
            all_types=src.all_types,
            map_types=src.map_types,
            cflags=(*config.cflags, *src.cflags),
            cflags_dir=config.root,
            arches=config.arches or DEFAULT_ARCHES,
            arch_cflags=config.arch_cflags,
            jobs=args.jobs,
            command=f"{PROG} generate",
        )
        stem = src.stem or default_stem(src.path)
        what = display_path(src.path)
        if not args.force and up_to_date(Path("."), src.path, stem, opts):
            _say(f"{what}: up to date (inputs unchanged; --force regenerates)")
            continue
        try:
            result = build_from_source(src.path, opts)
        except GenError as e:
            raise (e.within(str(pyproject)) if not e.where else e) from e.__cause__
        _warn(result)
        _show_inputs(result, opts.cflags)
        if args.check:
            stale.extend(_out_of_date(config.output_dir, result))
            continue
        _write(what, config.output_dir, result)
        record(Path("."), src.path, result, opts)
    if args.check:
        return _report_check(stale)
    return 0


def _vmlinux_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} vmlinux",
        description="Write a C header of the running kernel's BTF (or of --btf PATH): the "
        "vmlinux.h CO-RE programs include, without bpftool.",
        epilog="examples:\n"
        "  ebpf-gen vmlinux -o bpf/vmlinux.h          every type of the running kernel\n"
        "  ebpf-gen vmlinux --btf vmlinux-6.1 -o -    another kernel's BTF, to stdout\n"
        "  ebpf-gen vmlinux --type 'struct task_struct' --type 'struct trace_event_raw_sys_exit'\n"
        "                                           only these and what they embed\n"
        "  ebpf-gen vmlinux --for bpf/opensnoop.bpf.c -o bpf/vmlinux.h -- -Ibpf\n"
        "                                           only the types that source uses\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument("-o", "--output", default="vmlinux.h", metavar="FILE",
                   help="the header to write ('-': stdout; default: vmlinux.h)")
    p.add_argument("--btf", default="/sys/kernel/btf/vmlinux", metavar="PATH",
                   help="raw BTF or an ELF file with .BTF (default: /sys/kernel/btf/vmlinux)")
    p.add_argument("--type", dest="types", action="append", default=[], metavar="NAME",
                   help="emit only this type and the types it needs to compile (repeatable): "
                   "a minimal header; pointers to other structs stay declared, not defined")
    p.add_argument("--for", dest="sources", action="append", default=[], metavar="SOURCE",
                   help="emit only the types SOURCE uses (repeatable): defined where it needs "
                   "them complete (members read, embedded, sizeof), declared where it only "
                   "points at them; clang flags for SOURCE go after --")
    return p


def _vmlinux_text(args: argparse.Namespace, data: bytes) -> str:
    from .btf.decode import decode_btf
    from .btf.types import Kind
    from .cheader import HeaderWriter

    spec = decode_btf(data, where=args.btf)
    writer = HeaderWriter(spec)
    only = None
    if args.types:
        kinds = {"struct": (Kind.STRUCT,), "union": (Kind.UNION,),
                 "enum": (Kind.ENUM, Kind.ENUM64)}
        only = []
        for name in args.types:
            prefix, _, bare = name.partition(" ")
            wanted = kinds.get(prefix, ())
            if not wanted:
                bare, wanted = name, (Kind.STRUCT, Kind.UNION, Kind.TYPEDEF, Kind.ENUM, Kind.ENUM64)
            found = spec.named(bare.strip(), *wanted)
            if not found:
                raise ConfigError(f"--type {name}: no such type in the BTF", where=args.btf)
            only.append(found[0].id)
    what = "the running kernel" if args.btf == "/sys/kernel/btf/vmlinux" else Path(
        args.btf).name
    if args.sources:
        from .minimal import minimal_header

        return minimal_header(spec, [Path(s) for s in args.sources], cflags=args.cflags,
                              what=what)
    return writer.header(what=what, only=only)


def _run_vmlinux(argv: list[str]) -> int:
    argv, cflags = _split_extra(argv)
    args = _vmlinux_parser().parse_args(argv)
    args.cflags = cflags
    if cflags and not args.sources:
        raise ConfigError("clang flags after -- apply to --for SOURCE only, and none was given")
    if args.sources and args.types:
        raise ConfigError("--for and --type both choose the types: give one of them")
    _set_verbosity(args)
    src = Path(args.btf)
    try:
        data = src.read_bytes()
    except FileNotFoundError as e:
        hint = (" (this kernel was built without CONFIG_DEBUG_INFO_BTF): pass --btf PATH"
                if args.btf == "/sys/kernel/btf/vmlinux" else "")
        raise ConfigError(f"no such file{hint}", where=args.btf) from e
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror}", where=args.btf) from e
    if data[:4] == b"\x7fELF":
        from .elf import parse_elf

        data = parse_elf(data, args.btf).btf
    # The model and the header's strings are hundreds of thousands of objects, none of
    # them cyclic garbage: the collector would only rescan them (a third of the command's
    # time on vmlinux).
    collecting = gc.isenabled()
    gc.disable()
    try:
        text = _vmlinux_text(args, data)
    finally:
        if collecting:
            gc.enable()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.replace(out)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write: {e.strerror}", where=str(out)) from e
    _say(f"{args.btf}: wrote {args.output} ({text.count(chr(10))} lines)")
    return 0


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    # `ebpf-gen -v generate` as well as `ebpf-gen generate -v`
    lead = 0
    while lead < len(argv) and argv[lead] in ("-v", "--verbose", "-q", "--quiet"):
        lead += 1
    if argv[lead:lead + 1] == ["generate"]:
        return _run_generate(argv[lead + 1:] + argv[:lead])
    if argv[lead:lead + 1] == ["vmlinux"]:
        return _run_vmlinux(argv[lead + 1:] + argv[:lead])
    main_args, extra = _split_extra(argv)
    args = _main_parser().parse_args(main_args)
    return _run_single(args, extra)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except GenError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
