# The two commands: `make demo` (the main job) and `make test` (the whole suite).
# Every target bootstraps what it needs, idempotently: the virtualenv (.venv, from uv.lock),
# checkov's own virtualenv (.tools/checkov, from requirements/checkov.lock), the cdktf CLI
# (node_modules, from package-lock.json) and Debian packages (haproxy, wrk, stress-ng).
# Bytecode is compiled at install time: with PYTHONDONTWRITEBYTECODE set (as on these machines)
# every synth would otherwise recompile ~180 provider modules from source (~1 s).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
CHECKOV_VENV := .tools/checkov
# jsii prints an end-of-life banner on Node 20 (this machine); CI pins Node 22 instead.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: bootstrap-move-state preflight demo test setup system-packages synth certs local-up local-down bench-app bench-synth bench-gateway bench-idempotency bench-telemetry bench-auth flake-hunt lint package clean

demo: $(VENV)/.synced node_modules/.synced system-packages
	$(PY) -m loadtests.demo

test: $(VENV)/.synced $(CHECKOV_VENV)/.synced node_modules/.synced system-packages
	$(VENV)/bin/pytest

setup: $(VENV)/.synced $(CHECKOV_VENV)/.synced node_modules/.synced system-packages

$(VENV)/.synced: pyproject.toml uv.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) sync --frozen --quiet --compile-bytecode --python $(PY)
	@touch $@

$(CHECKOV_VENV)/.synced: requirements/checkov.lock
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $<
	@touch $@

node_modules/.synced: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

system-packages:
	@tools/ensure-debian-packages.sh haproxy=haproxy wrk=wrk stress-ng=stress-ng

synth: $(VENV)/.synced
	$(PY) main.py

# Bootstrap, step 2 (docs/delivery.md): with state_backend = "azurerm" in config/bootstrap.toml,
# move todo-api-bootstrap's local state into the account it created. Run once, by hand.
bootstrap-move-state: $(VENV)/.synced node_modules/.synced
	$(PY) main.py
	cd cdktf.out/stacks/todo-api-bootstrap && terraform init -input=false -migrate-state -force-copy

# Read-only check of Azure with your own `az login` before the first deploy (tools/operations/preflight.py).
preflight: $(VENV)/.synced node_modules/.synced
	$(PY) main.py
	$(PY) -m tools.operations.preflight cdktf.out/stacks

certs: $(VENV)/.synced
	$(PY) -m tools.development.certs generate

local-up: $(VENV)/.synced node_modules/.synced system-packages
	$(PY) -m loadtests.topology up $(ARGS)

local-down: $(VENV)/.synced
	$(PY) -m loadtests.topology down

bench-app: $(VENV)/.synced node_modules/.synced system-packages
	$(PY) -m benchmarks.app_server --rounds 3

bench-synth: $(VENV)/.synced
	$(PY) -m benchmarks.synth

bench-gateway: $(VENV)/.synced node_modules/.synced system-packages
	$(PY) -m benchmarks.gateway

bench-idempotency: $(VENV)/.synced node_modules/.synced system-packages
	$(PY) -m benchmarks.idempotency

bench-telemetry: $(VENV)/.synced system-packages
	$(PY) -m benchmarks.telemetry

bench-auth: $(VENV)/.synced system-packages
	$(PY) -m benchmarks.auth

# The whole suite RUNS times in a row while stress-ng keeps one core busy; every failing test id
# is reported (reports/flake-hunt/summary.md). LOAD=none runs it on an idle machine.
RUNS ?= 5
LOAD ?= stress
flake-hunt: $(VENV)/.synced $(CHECKOV_VENV)/.synced node_modules/.synced system-packages
	$(PY) -m tools.development.flake_hunt --runs $(RUNS) --load $(LOAD)

package: $(VENV)/.synced
	$(PY) -m tools.delivery.package_app

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check .

clean:
	rm -rf cdktf.out reports dist .local .pytest_cache
