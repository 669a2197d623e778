# hepad: common jobs. `make help` lists them. Everything installs into .venv from this checkout.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
comma := ,
# GPU=1 adds the gpu extra (JAX with CUDA); the stamp differs so switching reinstalls.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)$(if $(GPU),-gpu)

.PHONY: help install run test sweep lint format bench bench-smoke bench-gpu clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test$(if $(GPU),$(comma)gpu)]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv and install hepad with its test tools (GPU=1: also JAX with CUDA)

run: install  ## the embedded default: generate Pythia jets, train the conv AE, write outputs/...
	$(BIN)/hepad-run $(ARGS)

# One worker per core (at most 4), whole test files to a worker so their fixtures are built once.
PYTEST_ARGS ?= -n auto --maxprocesses 4 --dist loadfile

test: install  ## the test suite (PYTEST_ARGS= runs it in one process)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

sweep: install  ## latent-size sweep on the default data
	$(BIN)/hepad-run -m model.latent_dim=2,4,8,16 $(ARGS)

lint: install  ## ruff lint and format check
	$(BIN)/ruff check hepad_cli tests benchmarks
	$(BIN)/ruff format --check hepad_cli tests benchmarks

format: install  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix hepad_cli tests benchmarks
	$(BIN)/ruff format hepad_cli tests benchmarks

bench: install  ## benchmark suite: prints a table, writes benchmarks/results.json
	$(BIN)/python benchmarks/run.py

bench-smoke: install  ## the benchmark suite at tiny sizes
	$(BIN)/python benchmarks/run.py --smoke

bench-gpu: install  ## training throughput on the visible accelerator: writes benchmarks/results-gpu.json
	$(BIN)/python benchmarks/run.py --gpu $(ARGS)

clean:  ## remove the venv, build files and caches (keeps data/ and outputs/)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
