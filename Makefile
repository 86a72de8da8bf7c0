# One-command entry points; each target creates and uses the project's own virtualenvs.
VENV ?= .venv
CHECKOV_VENV ?= .venv-checkov
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install test lint infra-check demo up down bench bench-imports clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# checkov pins many packages, so it lives in a virtualenv of its own.
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet "checkov>=3.2,<4"
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	terraform fmt -check -recursive infra

infra-check: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov -d infra --framework terraform --compact --quiet --skip-download

test: lint infra-check
	$(BIN)/pytest

demo: install
	$(BIN)/python -m opus_local.demo $(if $(VIDEO),--video "$(VIDEO)")

# The local stack in the background: `eval "$$(make -s up)"` points opus-pipeline at it; `make down` stops it.
up: install
	@$(BIN)/python -m opus_local.background up

down:
	@$(BIN)/python -m opus_local.background down

bench: install
	$(BIN)/python -m opus_local.bench $(if $(SIZES),--size $(SIZES))

bench-imports: install
	$(BIN)/python -m opus_local.bench --imports-only

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache .demo infra/.build
