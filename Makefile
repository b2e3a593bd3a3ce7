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

bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python bench/publish.py
	$(BIN)/python bench/sse_fanout.py
	$(BIN)/python bench/idle_memory.py
	$(BIN)/python bench/templates.py
	$(BIN)/python bench/delivery.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache
