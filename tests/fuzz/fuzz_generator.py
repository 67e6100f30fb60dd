"""Coverage-guided fuzzing of the generator with atheris (libFuzzer for Python): ``make fuzz``.

    .venv/bin/python tests/fuzz/fuzz_generator.py [libFuzzer flags]   e.g. -max_total_time=600
    .venv/bin/python tests/fuzz/fuzz_generator.py --allow-known ...   skip the failure
        classes listed in target.KNOWN_OPEN (other engineers' open work), counting them
    .venv/bin/python tests/fuzz/fuzz_generator.py --replay-mutation N  (bytes of the test
        suite's N-th deterministic mutation on stdout, to save a crasher it found)

Like libbpf's OSS-Fuzz target over bpf_object__open_mem and cilium/ebpf's Go fuzz targets
over its ELF and BTF readers, one input is an object file's bytes and the target is
tests/fuzz/target.py's ``run_one`` (ELF -> BTF -> model -> render -> compile). The corpus
starts from the project's own objects (written to build/fuzz-corpus); half of the
mutations are libFuzzer's, half the target's structure-aware ones. A crash is any
exception other than the project's error: libFuzzer saves the input under
build/fuzz-crashes/, and it belongs in tests/fuzz/regressions/ (or tests/fuzz/cases.py)
with a test once fixed.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.setrecursionlimit(1000)  # as a user's interpreter: a deep walk must fail here too


def _replay(n: int) -> None:
    from tests.fuzz.target import mutate, seed_objects

    seeds = seed_objects()
    corpus = [seeds[k] for k in sorted(seeds)]
    rng = random.Random(8)  # tests/test_fuzz.py's sequence
    for i in range(n + 1):
        data = mutate(rng.choice(corpus), rng)
        if i == n:
            sys.stdout.buffer.write(data)


def main() -> None:
    if sys.argv[1:2] == ["--replay-mutation"]:
        _replay(int(sys.argv[2]))
        return
    import atheris

    from tests.fuzz.target import known_open, mutate, run_one, seed_objects

    # instrument_imports misses ebpf_gen: the editable install's finder loads it, not the
    # path finder atheris hooks. Instrumenting every loaded function afterwards reaches it
    # (and the stdlib parts it uses, which costs speed, not correctness).
    atheris.instrument_all()

    corpus = ROOT / "build" / "fuzz-corpus"
    crashes = ROOT / "build" / "fuzz-crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for data in seed_objects().values():
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)

    allow_known = "--allow-known" in sys.argv
    known: dict[str, int] = {}

    def one_input(data: bytes) -> None:
        try:
            run_one(data)
        except Exception as e:
            name = known_open(e) if allow_known else None
            if name is None:
                raise
            known[name] = known.get(name, 0) + 1
            if known[name] == 1:  # the first of each, kept for the owner
                (crashes / f"known-{name.replace(' ', '-')}").write_bytes(data)
                print(f"known open failure class {name!r} (skipped): {e}", file=sys.stderr)

    def report() -> None:
        if known:
            print(f"known open failure classes skipped: {known}", file=sys.stderr)

    import atexit

    atexit.register(report)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)  # type: ignore[no-any-return]
        return mutate(data, rng)[:max_size]

    flags = [a for a in sys.argv[1:] if a != "--allow-known"]
    args = [sys.argv[0], *flags, f"-artifact_prefix={crashes}/", "-timeout=20",
            "-rss_limit_mb=2048", "-max_len=262144", str(corpus)]
    atheris.Setup(args, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
