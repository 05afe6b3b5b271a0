# Palisade — every target sets itself up; run `make demo` or `make test` on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Interpreters the layer is tested on besides the main one (Lambda's Python runtimes).
LAYER_PYTHONS ?= 3.10 3.11 3.12 3.13

.PHONY: all setup test lint typecheck pytest layer-pythons demo bench layer clean

all: test

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layer/palisade extension/palisade_extension sandbox/palisade_sandbox \
		analyzer/palisade_analyzer cli/palisade_cli infra/palisade_infra \
		demo/palisade_demo bench/palisade_bench tools

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

layer-pythons: $(STAMP)
	@$(BIN)/python tools/layer_pythons.py $(LAYER_PYTHONS)

test: lint typecheck pytest layer-pythons

demo: $(STAMP)
	$(BIN)/python -m palisade_cli.main demo

bench: $(STAMP)
	$(BIN)/python -m palisade_cli.main bench

layer: $(STAMP)
	$(BIN)/python -m palisade_cli.main layer build

clean:
	rm -rf $(VENV) .venv-* dist build *.egg-info .pytest_cache .mypy_cache .ruff_cache
