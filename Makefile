# Two commands for a fresh machine: `make run` and `make test`. Both set everything up first
# and are idempotent: the second time they skip what is already in place.
# The interpreter of the virtual environment: the distribution's Python 3.11 where it has one
# with venv support (Debian's is built with PGO and LTO: a tiny training's fresh process, mostly
# imports, took 10-19 % less time than under a plain source build, with the same bits;
# docs/performance.md), else `python3`. `make PYTHON=...` picks another; an existing .venv stays.
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, sys; print(sys.executable)' \
                  2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup data run test test-fast doctest bench bench-quick clean

setup: $(INSTALLED) data
	scripts/get-chromium.sh  # headless Chromium for the report tests

# Reinstall only when the pinned dependencies or the package metadata change. pip writes no
# bytecode here: `compileall` writes the same .pyc files on every core, where pip's one process
# took 83 of its 162 s on the 2-core Zen 3 (docs/performance.md). Its status is not checked:
# like pip, it reports files that are not Python 3.11 (torch ships some for 3.12) and goes on.
# Chromium's install (apt, on a fresh machine) runs beside pip's, which uses one core;
# `setup` runs the same script again afterwards, which returns at once when it is in place.
$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	scripts/get-chromium.sh & chromium=$$!; \
	$(BIN)/python -m pip install -q --no-compile -c constraints.txt -e '.[all,test]'; \
	installed=$$?; wait $$chromium; test $$installed -eq 0
	-$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1
	touch $(INSTALLED)

data: $(INSTALLED)
	TWINRUN=$(BIN)/twinrun scripts/get-data.sh

# The main job: the quick Fashion-MNIST workload twice in fresh processes, on the default
# backend; prints both fingerprints, whether they are identical, and the test accuracy.
run: setup
	$(BIN)/twinrun check -n 2 --workload fashion-cnn --preset quick

PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider
# The `>>>` examples in the package's docstrings, in a pytest of their own because they
# change process-wide state (seeds, thread pools, the Keras backend); see src/conftest.py.
DOCTEST := $(PYTEST) --doctest-modules src/twinrun

# The tests run in TEST_WORKERS pytest-xdist workers, a test file to a worker (its module and
# session fixtures, the trained artifacts, are made once): most tests wait on fresh processes
# that import a framework, load data or sleep, so two workers on 2 cores took 0.71x the time
# of one (docs/performance.md, "The test suite").
TEST_WORKERS ?= 2
PARALLEL := -n $(TEST_WORKERS) --dist loadfile

# Every test, then every docstring example; fails if either fails (both always run).
test: setup
	$(PYTEST) $(PARALLEL) --durations=30 tests; tests=$$?; $(DOCTEST); examples=$$?; \
	test $$tests -eq 0 && test $$examples -eq 0

# Everything but the tests that train real models in fresh processes, then the examples.
test-fast: setup
	$(PYTEST) $(PARALLEL) -m "not slow" tests; tests=$$?; $(DOCTEST); examples=$$?; \
	test $$tests -eq 0 && test $$examples -eq 0

doctest: setup
	$(DOCTEST)

bench: setup
	$(BIN)/python bench/run.py

bench-quick: setup
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) twinrun-runs
