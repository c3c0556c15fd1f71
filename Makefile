# Two commands for a fresh machine: `make run` and `make test`. Both set everything up first
# and are idempotent: the second time they skip what is already in place.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: setup data run test test-fast bench bench-quick clean

setup: $(INSTALLED) data

# Reinstall only when the pinned dependencies or the package metadata change.
$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all,test]'
	touch $(INSTALLED)

data: $(INSTALLED)
	TWINRUN=$(BIN)/twinrun scripts/get-data.sh

# The main job: the quick Fashion-MNIST workload twice in fresh processes, on the default
# backend; prints both fingerprints, whether they are identical, and the test accuracy.
run: setup
	$(BIN)/twinrun check -n 2 --workload fashion-cnn --preset quick

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# Everything but the tests that train real models in fresh processes.
test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests

bench: setup
	$(BIN)/python bench/run.py

bench-quick: setup
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) twinrun-runs
