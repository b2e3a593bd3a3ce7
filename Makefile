# Two commands matter: `make run` and `make test`. Both create .venv when it is missing
# and (re)install the project only when pyproject.toml changed, so the second run is quick.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= config/engine.toml

.PHONY: install run test lint format bench clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: install
	$(BIN)/hookwire run --config $(CONFIG)

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check engine tests bench
	$(BIN)/ruff format --check engine tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format engine tests bench
	$(BIN)/ruff check --fix engine tests bench

# Every scenario of the load-benchmark suite (~3 min on 2 cores); `make bench BENCH="latency --quick"`
# runs some of them. The bench extra adds the baselines' clients and matplotlib (the chart).
BENCH ?=
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $(STAMP) $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
