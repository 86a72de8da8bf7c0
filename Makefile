# One-command entry points; every target creates and uses the project's own virtualenv.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install test lint demo bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	terraform fmt -check -recursive infra

test: lint
	$(BIN)/pytest

demo: install
	$(BIN)/python -m opus_local.demo $(if $(VIDEO),--video "$(VIDEO)")

bench: install
	$(BIN)/python -m opus_local.bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo
