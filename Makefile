# Every target creates the virtual environment it needs (./.venv) on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)

demo: $(STAMP)  ## run the main example on embedded sources
	$(BIN)/python examples/quickstart.py

lint: $(STAMP)  ## ruff (check + format check) and mypy --strict
	$(BIN)/ruff check flowactors tests examples benchmarks
	$(BIN)/ruff format --check flowactors tests examples benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format flowactors tests examples benchmarks
	$(BIN)/ruff check --fix flowactors tests examples benchmarks

test: lint  ## lint, then the whole test suite
	$(BIN)/pytest flowactors tests

bench: $(STAMP)  ## the performance runner (prints a table, writes benchmarks/results.json)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
