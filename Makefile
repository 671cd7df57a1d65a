# The two commands: `make demo` and `make test`. Both set up .venv first (idempotent, quick when done).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-fast test-gpu test-mutants demo clean

setup:
	@bash scripts/setup.sh

# Two pytest workers (pytest-xdist), one thread each: one process used about one core of two, as
# most slow tests wait on a subprocess or run small matrices; two threads per worker would oversubscribe.
PYTEST := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -n $${PYTEST_WORKERS:-2}

test: setup
	$(PYTEST) $(PYTEST_ARGS)

# The suite without the slow end-to-end runs through tools/ (for quick iterations).
test-fast: setup
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

# The cuda-marked tests alone (tests/test_gpu.py and the NCCL test of tests/engine/test_fsdp_strategy.py; meant to
# take a few minutes on one GPU, never run on one yet); without CUDA they are skipped.
test-gpu: setup
	$(PY) -m pytest -m cuda -rs $(PYTEST_ARGS)

# Show that the suite catches bugs: break one thing at a time in a scratch copy (tests/mutants.py lists
# them), run the non-slow tests that cover it, and fail if any mutant survives. Not part of `make test`.
test-mutants: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) tests/mutants.py $(MUTANTS_ARGS)

demo: setup
	$(PY) tools/demo.py

clean:
	rm -rf $(VENV) work_dirs data/tiny_*
