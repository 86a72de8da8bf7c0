# One-command entry points; each target creates and uses the project's own virtualenvs.
VENV ?= .venv
CHECKOV_VENV ?= .venv-checkov
SCHEMAS ?= .provider-schemas
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: requirements system-packages system-packages-demo install test test-unit lint infra-check provider-schemas deploy demo up down bench bench-burst bench-imports soak clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "opus-local-checkout.pth").write_text("$(CURDIR)\n")'
	touch $@

# checkov pins many packages, so it lives in a virtualenv of its own.
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet "checkov>=3.2,<4"
	touch $@

# The providers' schemas for tests/integration/test_provider_schema.py, from their prebuilt CDK Terrain bindings:
# each package version below binds exactly the provider version infra/versions.tf pins
# (cdktn-provider-google 20.3.1 = google and google-beta 7.46.1, time 14.0.2 = time 0.14.2,
# archive 14.0.1 = archive 2.8.1; each package's README names its provider version). The wheels
# (about 130 MB) are only downloaded, never installed, and reduced to a few MB of JSON.
PROVIDER_SCHEMA_PACKAGES := cdktn-provider-google==20.3.1 cdktn-provider-google-beta==20.3.1 \
	cdktn-provider-time==14.0.2 cdktn-provider-archive==14.0.1

$(SCHEMAS)/.extracted: Makefile tests/provider_schema.py | $(BIN)/.installed
	rm -rf $(SCHEMAS)
	$(BIN)/pip download --quiet --no-deps --dest $(SCHEMAS)/wheels $(PROVIDER_SCHEMA_PACKAGES)
	$(BIN)/python tests/provider_schema.py $(SCHEMAS) $(SCHEMAS)/wheels/*.whl
	rm -rf $(SCHEMAS)/wheels
	touch $@

install: $(BIN)/.installed

# functions/requirements.txt (what the Cloud Functions build installs), written from pyproject.toml's
# runtime dependencies less the CLI's own; tests/unit/test_requirements.py checks they agree.
requirements:
	$(PYTHON) -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; \
	  lines = [d for d in deps if not d.startswith("tqdm")]; \
	  open("functions/requirements.txt", "w").write("# Written by make requirements from pyproject.toml: do not edit.\n" + "\n".join(lines) + "\n")'

# The Debian packages (emulator, ffmpeg, chromium): installed as root, otherwise the one command to run.
system-packages:
	scripts/system-packages.sh test

system-packages-demo:
	scripts/system-packages.sh demo

provider-schemas: $(SCHEMAS)/.extracted

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=functions $(BIN)/lint-imports
	$(BIN)/mypy
	terraform fmt -check -recursive infra

infra-check: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov -d infra --framework terraform --compact --quiet --skip-download

# Every tier: tests/unit (pure), tests/integration (emulators, stand-in), tests/e2e (the whole loop).
test: system-packages lint infra-check provider-schemas
	PROVIDER_SCHEMAS=$(SCHEMAS) $(BIN)/pytest

# The pure tier alone: no emulator, no network, no process (tests/conftest.py refuses them there).
test-unit: install
	$(BIN)/pytest tests/unit -q

# First deployment and every later one by hand: see docs/deploying.md.
deploy:
	infra/deploy.sh

demo: system-packages-demo install
	$(BIN)/python -m opus_local.demo $(if $(VIDEO),--video "$(VIDEO)")

# The local stack in the background: `eval "$$(make -s up)"` points opus-pipeline at it; `make down` stops it.
up: install
	@$(BIN)/python -m opus_local.background up

down:
	@$(BIN)/python -m opus_local.background down

bench: install
	$(BIN)/python -m opus_local.bench $(if $(SIZES),--size $(SIZES)) $(if $(CLIP_SIZES),--clip-size $(CLIP_SIZES))
	$(BIN)/python -m opus_local.burst --videos $(or $(VIDEOS),100) --contention

bench-burst: install
	$(BIN)/python -m opus_local.burst --videos $(or $(VIDEOS),100) --contention

bench-imports: install
	$(BIN)/python -m opus_local.bench --imports-only

# The fault soak (README "Fault soak"): SCHEDULES seeded schedules from FIRST_SEED, then the table.
# About 20 of them run in `make test` (tests/e2e/test_soak.py).
SCHEDULES ?= 200
FIRST_SEED ?= 1
soak: install
	$(BIN)/python -m opus_local.soak --schedules $(SCHEDULES) --first-seed $(FIRST_SEED)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(SCHEMAS) .pytest_cache .ruff_cache .demo infra/.build
