"""The bounded fuzz pass of every test run: the seed corpus replayed, then a fixed number of
deterministic mutations of it (tests/fuzz/target.py; ``make fuzz`` runs the same target
coverage-guided for as long as asked). Fails on any exception other than the project's
error, on an InternalError (the generator's safety net catching a bug), and on a module
Python cannot compile."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .fuzz.target import mutate, run_one, seed_objects

# About 7 s on this machine; FUZZ_MUTATIONS raises it for a longer run without atheris.
MUTATIONS = int(os.environ.get("FUZZ_MUTATIONS", "2000"))


@pytest.fixture(scope="module")
def seeds() -> dict[str, bytes]:
    found = seed_objects()
    assert len(found) > 40, sorted(found)  # the compiled corpus, not just generated/
    return found


def test_seed_corpus_replays(seeds: dict[str, bytes]) -> None:
    generated = 0
    for name, data in seeds.items():
        try:
            generated += run_one(data) is not None
        except Exception as e:
            raise AssertionError(f"seed {name}: {type(e).__name__}: {e}") from e
    assert generated > len(seeds) // 2  # the seeds are mostly valid objects


def test_deterministic_mutations(seeds: dict[str, bytes]) -> None:
    rng = random.Random(8)
    corpus = [seeds[k] for k in sorted(seeds)]
    start = time.monotonic()
    outcomes = {"module": 0, "error": 0}
    for n in range(MUTATIONS):
        data = mutate(rng.choice(corpus), rng)
        try:
            module = run_one(data)
        except Exception as e:
            name = f"tests/fuzz/regressions/mutation-{n}.o"
            raise AssertionError(
                f"mutation {n} (seed 8): {type(e).__name__}: {e}; save the input with "
                f"tests/fuzz/fuzz_generator.py --replay-mutation {n} > {name}"
            ) from e
        outcomes["module" if module is not None else "error"] += 1
    # Both paths exercised: mutations that still generate, and ones refused cleanly
    assert outcomes["module"] > MUTATIONS // 10 and outcomes["error"] > MUTATIONS // 10, outcomes
    assert time.monotonic() - start < 60


def test_mutations_through_the_cli(seeds: dict[str, bytes], tmp_path: Path) -> None:
    """A few mutated objects as a user meets them: exit 0, or exit 2 with one line naming
    the file and nothing written; never a traceback."""
    rng = random.Random(80)
    corpus = [seeds[k] for k in sorted(seeds)]
    out = tmp_path / "out"
    for _ in range(8):
        (tmp_path / "m.o").write_bytes(mutate(rng.choice(corpus), rng))
        proc = subprocess.run(
            [sys.executable, "-m", "ebpf_gen.cli", "--object", "m.o", "--stem", "m",
             "--output-dir", "out", "--all-types"],
            cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )
        assert proc.returncode in (0, 2), proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode == 2:
            lines = proc.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("ebpf-gen: m.o: "), proc.stderr
            assert not out.exists() or not any(out.iterdir())
        else:
            compile((out / "m.py").read_text(), "m.py", "exec")
            for p in out.iterdir():
                p.unlink()
