# Two commands matter: `make run` and `make test`. Both create .venv when it is missing
# and (re)install the project only when pyproject.toml changed, so the second run is quick.
# `make run` installs the runtime dependencies only (a few seconds); `make test` adds the
# test extra (pytest, mypy, ruff, selenium, matplotlib...) and `make bench` the bench extra.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
CONFIG ?= config/engine.toml

.PHONY: install install-test run test lint format bench clean js

install: $(STAMP)

install-test: $(TEST_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The runtime dependencies only: what `hookwire run` needs.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

# The test extra includes the runtime, so it stamps both.
$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP) $(TEST_STAMP)

run: install
	$(BIN)/hookwire run --config $(CONFIG)

test: install-test
	$(BIN)/python -m pytest -q

# Particle's own JavaScript client, which the tests drive to prove our API compatible with it
# (tests/particle_js.py). Installed only where npm is: elsewhere those tests skip, naming the
# Debian packages (nodejs, npm), and .ci/run installs both so that in CI they run.
NPM := $(shell command -v npm 2>/dev/null)
JS_STAMP := tests/js/node_modules/.installed

js: $(JS_STAMP)

$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

ifneq ($(NPM),)
test: $(JS_STAMP)
endif

lint: install-test
	$(BIN)/ruff check engine tests bench
	$(BIN)/ruff format --check engine tests bench
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff format engine tests bench
	$(BIN)/ruff check --fix engine tests bench

# Every scenario of the load-benchmark suite (~3 min on 2 cores); `make bench BENCH="latency --quick"`
# runs some of them. The bench extra adds the baselines' clients and matplotlib (the chart).
BENCH ?=
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $(STAMP) $(TEST_STAMP) $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache tests/js/node_modules
