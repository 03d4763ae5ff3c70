# voucher-ledger: `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint bench bench-http bench-locust bench-replica bench-partitions bench-projections bench-audit bench-reconcile demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

## run: create the environment, load the demo data and serve the API on SQLite at 127.0.0.1:8080.
run: $(VENV)/.installed
	$(BIN)/voucher-ledger demo
	$(BIN)/voucher-ledger serve --host 127.0.0.1 --port 8080

demo: $(VENV)/.installed
	$(BIN)/voucher-ledger demo

## lint: ruff (lint and format) and mypy on the domain and the API.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ledger api projections audit treasury

## test: lint, then the whole suite on SQLite and on a throwaway PostgreSQL. The load report's
## test needs locust (the load extra) and opens the page in Debian's headless Chromium.
test: lint
	$(BIN)/pip install -q -e '.[dev,load]'
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	scripts/with-postgres.sh $(BIN)/pytest -q

## bench: redemption throughput on SQLite and PostgreSQL beside pgbench.
bench: $(VENV)/.installed-dev
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.redeem

## bench-projections: catch-up speed and lag of the read models on a throwaway PostgreSQL.
bench-projections: $(VENV)/.installed-dev
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.projections

## bench-audit: chain, verify and trace speed with 1,000,000 events on a throwaway PostgreSQL.
bench-audit: $(VENV)/.installed-dev
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.audit

## bench-reconcile: import and match a 100,000-line camt.053 on a throwaway PostgreSQL.
bench-reconcile: $(VENV)/.installed-dev
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.reconcile

## bench-http: pgbench, then wrk writes and reads against the served API, on a throwaway PostgreSQL.
bench-http: $(VENV)/.installed-dev
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.http_wrk

## bench-replica: remote_apply's cost, the standby's lag under served writes, reads from the standby.
bench-replica: $(VENV)/.installed-dev
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	scripts/with-postgres.sh --replica $(BIN)/python -m benchmarks.replica

## bench-partitions: ledger processes on one log, then on a log each (partitions), beside pgbench.
bench-partitions: $(VENV)/.installed-dev
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.partitions

## bench-locust: the user scenarios of load_tests/locustfile.py over HTTP (16 users).
bench-locust: $(VENV)/.installed-dev
	$(BIN)/pip install -q -e '.[dev,load]'
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.http

## load: every user group's scenario (30 s each) against the served API on a throwaway
## PostgreSQL; summary.json and report.html under var/load/. Flags: make load LOAD_ARGS="--vouchers 100000"
LOAD_ARGS ?=
load: $(VENV)/.installed-dev
	$(BIN)/pip install -q -e '.[dev,load]'
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.load $(LOAD_ARGS)

## soak: 10 minutes at half the measured maximum rate; fails if RSS, p99 or the views' lag creep.
## Flags: make soak SOAK_ARGS="--minutes 3"
SOAK_ARGS ?=
soak: $(VENV)/.installed-dev
	$(BIN)/pip install -q -e '.[dev,load]'
	scripts/with-postgres.sh $(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
