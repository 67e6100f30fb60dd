# ebpf-gen developer entry points. `make test` is the README's test command.
PY ?= .venv/bin/python
KERNEL ?= 5.10 6.1 6.12

.PHONY: setup venv gen check-generated lint test test-unit test-kernel test-distros vmtest bench fuzz clean

setup:  ## system packages + .venv (idempotent; what .ci/run calls)
	bash scripts/setup.sh

venv:
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -e '.[generator,dev]'

gen:  ## regenerate every [tool.ebpf-gen] source into generated/ (skips unchanged inputs)
	$(PY) -m ebpf_gen.cli generate

check-generated:  ## fail when generated/ is stale (module text only, under another clang)
	PY=$(PY) bash scripts/check-generated.sh

# mypy finds ebpf_gen through the editable install's .pth entry (gen/), as a user's does.
lint:
	$(PY) -m ruff check gen tests bench examples generated scripts
	$(PY) -m ruff format --check generated
	$(PY) -m mypy -p ebpf_gen
	$(PY) -m mypy generated examples bench

test-unit:
	$(PY) -m pytest -q -m "not kernel and not vm"

test-kernel:
	$(PY) -m pytest -q -m "kernel and not vm"

test-distros:  ## setup + unit + host-kernel tiers of HEAD in a fresh root of the other Debian suite
	bash scripts/test-distros.sh

vmtest:  ## boot stock Debian kernels under qemu and run the kernel tier inside (KERNEL=5.10|6.1|6.12)
	$(PY) scripts/vmtest.py $(KERNEL)

test: lint check-generated
	$(PY) -m pytest -q

# Coverage-guided fuzzing of the generator (tests/fuzz/fuzz_generator.py, atheris). The test
# suite runs a bounded seeded pass every time (tests/test_fuzz.py); this runs for as long as
# asked. Crashers land in build/fuzz-crashes/. FUZZ_ARGS: more libFuzzer flags (-runs=N), or
# --allow-known to get past the classes listed in tests/fuzz/target.py KNOWN_OPEN.
FUZZ_SECONDS ?= 60
fuzz:
	$(PY) tests/fuzz/fuzz_generator.py -max_total_time=$(FUZZ_SECONDS) $(FUZZ_ARGS)

bench:
	$(PY) bench/gen_speed.py
	$(PY) bench/map_ops.py
	$(PY) bench/events.py
	$(PY) bench/startup.py

clean:
	rm -rf .venv build *.egg-info .pytest_cache .mypy_cache .ruff_cache
