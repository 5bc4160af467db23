# `make run` and `make test` are all a fresh machine needs; both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PEERS := .venv-peers
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv run test lint test-slow bench bench-peers report clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Trains MAF on the embedded 8x8 digits (no network); writes into workdirs/maf-default.
run: $(STAMP)
	$(PY) -m experiments.run --model=maf

# The fast suite (minutes); the slow checks are behind the `slow` marker. Tests that share a
# module's expensive fixture are marked to run on one worker (`xdist_group`).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow"

# Style (pyink, as flax formats), lint (ruff) and types (mypy on the library), as CI runs them.
lint: $(STAMP)
	$(VENV)/bin/pyink --check --quiet zoo experiments tests benchmarks
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/mypy

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m benchmarks.bench --case=maf_tabular --json

# Ours beside flowjax, zuko and PyTorch (BENCHMARKS.md), in an environment of their own.
bench-peers:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[peers]'
	$(PEERS)/bin/python -m benchmarks.peers.compare

report: $(STAMP)
	$(PY) -m experiments.report

clean:
	rm -rf $(VENV) $(PEERS) workdirs .pytest_cache
