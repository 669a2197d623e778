# hepad: common jobs. `make help` lists them. Everything installs into .venv from this checkout.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help install run test sweep lint format bench bench-smoke clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (or make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv and install hepad with its test tools

run: install  ## the embedded default: generate Pythia jets, train the conv AE, write outputs/...
	$(BIN)/hepad-run $(ARGS)

test: install  ## the test suite
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

clean:  ## remove the venv, build files and caches (keeps data/ and outputs/)
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
