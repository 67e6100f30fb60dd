"""``ebpf-gen``: the command line.

Exit codes: 0 done (or up to date), 1 ``--check`` found stale outputs, 2 an error, printed
as one ``ebpf-gen: where: what`` line (compile errors add clang's own diagnostics below it).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import ConfigError, GenError

PROG = "ebpf-gen"

_EPILOG = """\
examples:
  ebpf-gen probe.bpf.c                     compile (bpfel + bpfeb) and write generated/probe.py,
                                           generated/probe_bpfel.o, generated/probe_bpfeb.o
  ebpf-gen probe.bpf.c --output-dir pkg --stem probe_skel --type 'struct event'
  ebpf-gen probe.bpf.c -- -I include -DDEBUG=1   extra clang flags after --
  ebpf-gen --object build/probe.o          from an already compiled object (its byte order only)
  ebpf-gen generate                        every [[tool.ebpf-gen.source]] of pyproject.toml
  ebpf-gen generate --check                exit 1 listing outputs that are out of date

exit status: 0 ok, 1 --check found changes, 2 error
"""

_GENERATE_EPILOG = """\
pyproject.toml:
  [tool.ebpf-gen]
  output-dir = "generated"
  cflags = ["-Wall", "-I/usr/include/x86_64-linux-gnu"]

  [[tool.ebpf-gen.source]]
  path = "examples/hello.bpf.c"     # also: stem, types, all-types, cflags

Sources whose inputs (source, headers, flags, tool and ebpf-gen versions) are unchanged since
the last run are skipped; the record lives in .ebpf-gen-cache/ next to pyproject.toml.
"""


def _main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} SRC [options] [-- clang flags]\n"
        f"       {PROG} --object OBJ [options]\n"
        f"       {PROG} generate [--check]",
        description="Generate a typed Python skeleton (ctypes types, map/program/variable "
        "handles) from a BPF C program.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    p.add_argument("--target", default="bpfel,bpfeb", help="byte orders (default: bpfel,bpfeb)")
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
    return p


def _generate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} generate",
        description="Regenerate every source listed in pyproject.toml [tool.ebpf-gen].",
        epilog=_GENERATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    p.add_argument(
        "--force", action="store_true", help="regenerate even when inputs are unchanged"
    )
    p.add_argument("--config", type=Path, help="pyproject.toml to use (default: nearest)")
    return p


def _split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _warn(diagnostics: Sequence[object]) -> None:
    for d in diagnostics:
        print(d, file=sys.stderr)


def _report_check(changed: Sequence[Path]) -> int:
    from .generate import display_path

    for path in changed:
        print(f"would change: {display_path(path)}")
    return 1 if changed else 0


def _run_single(args: argparse.Namespace, extra: list[str]) -> int:
    from .config import find_pyproject, load_config
    from .generate import (
        Options,
        build_from_object,
        build_from_source,
        changed_files,
        display_path,
        write_outputs,
    )

    if (args.source is None) == (args.object is None):
        raise ConfigError("give either a C source file or --object OBJ (see --help)")
    targets = tuple(t.strip() for t in args.target.split(",") if t.strip())
    try:
        user_flags = shlex.split(args.cflags)
    except ValueError as e:
        raise ConfigError(f"--cflags: {e}") from e
    # The project's global cflags (include paths, mostly) apply to ad-hoc runs too, so the
    # "or: ebpf-gen SRC" line in a generated module reproduces it
    base_flags: tuple[str, ...] = ()
    pyproject = find_pyproject(Path.cwd())
    if pyproject is not None and args.source is not None:
        try:
            base_flags = load_config(pyproject).cflags
        except ConfigError:
            base_flags = ()  # a pyproject without [tool.ebpf-gen] is not ours to judge
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
    # Everything else that changes the outputs, so that the line reproduces them
    if args.target != "bpfel,bpfeb":
        command += ["--target", args.target]
    if args.cc != "clang":
        command += ["--cc", args.cc]
    if not args.strip:
        command.append("--no-strip")
    if args.cflags:
        command += ["--cflags", args.cflags]
    if extra:
        command += ["--", *extra]
    opts = Options(
        output_dir=output_dir,
        stem=args.stem,
        types=tuple(args.types),
        all_types=args.all_types,
        targets=targets,
        cc=args.cc,
        strip=args.strip,
        cflags=(*base_flags, *user_flags, *extra),
        command=shlex.join(command),
    )
    if args.object is not None:
        result = build_from_object(args.object, opts)
    else:
        result = build_from_source(Path(args.source), opts)
    _warn(result.diagnostics)
    if args.check:
        return _report_check(changed_files(output_dir, result.files))
    write_outputs(output_dir, result.files)
    return 0


def _run_generate(argv: list[str]) -> int:
    import os

    from .config import find_pyproject, load_config
    from .generate import (
        Options,
        build_from_source,
        changed_files,
        default_stem,
        record,
        up_to_date,
        write_outputs,
    )

    args = _generate_parser().parse_args(argv)
    pyproject = args.config or find_pyproject(Path.cwd())
    if pyproject is None:
        raise ConfigError("no pyproject.toml here or above", where=str(Path.cwd()))
    config = load_config(pyproject)
    if not config.sources:
        raise ConfigError("no [[tool.ebpf-gen.source]] entries", where=str(pyproject))
    # Paths in pyproject and in the generated modules are relative to the project root
    os.chdir(config.root)
    stale: list[Path] = []
    for src in config.sources:
        opts = Options(
            output_dir=config.output_dir,
            stem=src.stem,
            types=src.types,
            all_types=src.all_types,
            cflags=(*config.cflags, *src.cflags),
            command=f"{PROG} generate",
        )
        stem = src.stem or default_stem(src.path)
        if not args.force and up_to_date(Path("."), src.path, stem, opts):
            continue
        try:
            result = build_from_source(src.path, opts)
        except GenError as e:
            raise (e.within(str(pyproject)) if not e.where else e) from e.__cause__
        _warn(result.diagnostics)
        if args.check:
            stale.extend(changed_files(config.output_dir, result.files))
            continue
        write_outputs(config.output_dir, result.files)
        record(Path("."), src.path, result, opts)
    if args.check:
        return _report_check(stale)
    return 0


def run(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["generate"]:
        return _run_generate(argv[1:])
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
