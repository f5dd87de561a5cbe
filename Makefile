# cdcpipe — the two commands are `make demo` and `make test`; the rest are their steps.
# Every target bootstraps what it needs: system packages (apt-get, only when root), the
# virtualenv from requirements.lock, and the JVM artifacts from cdcpipe/jvm/pom.xml.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
CDCPIPE := $(VENV)/bin/cdcpipe
VENV_STAMP := $(VENV)/.installed
CONSOLE_ASSETS := build/console
CONSOLE_STAMP := $(CONSOLE_ASSETS)/.installed
PYTEST_ARGS ?=

.PHONY: help system-deps venv jars console-assets up down status check unit test test-cluster demo bench opcheck clean

help:
	@echo "make demo     the whole pipeline end to end, stack left running (make down stops it)"
	@echo "make test     every test against the real local stack"
	@echo "make check    ruff lint and format check, imports in one direction (no stack)"
	@echo "make unit     the tests that need no service and no jars (under a minute)"
	@echo "make test-cluster  the node-loss tests on the cluster topology (after CDCPIPE_TOPOLOGY=cluster make demo)"
	@echo "make opcheck  random operations against the running stack, each judged (OPCHECK_ARGS=\"--seed 7 --ops 300\")"
	@echo "make up|down|status   the local runtime"

# PostgreSQL server binaries, a JDK 17, Maven and npm; the tests also want Chromium and setfacl (TEST_DEPS).
# Installed with apt-get when running as root (CI); otherwise we say what to install and stop.
TEST_DEPS :=
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || [ -n "$$CDCPIPE_PG_BIN" ] || missing="$$missing postgresql"; \
	command -v javac >/dev/null || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$(TEST_DEPS)" ]; then command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v setfacl >/dev/null || missing="$$missing acl"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "install them (Debian/Ubuntu: sudo apt-get install$$missing) and run make again"; exit 3; \
	  fi; \
	fi

# Only the tests drive a browser (the console's, through Playwright): make demo needs none.
test: TEST_DEPS := chromium

$(VENV_STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (set PYTHON=... to another 3.11 interpreter)"; exit 3; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	@touch $@

venv: $(VENV_STAMP)

jars: venv system-deps
	$(CDCPIPE) jars

# The console's browser assets (htmx, its SSE extension, Chart.js): npm packages pinned by
# cdcpipe/console/package-lock.json (with integrity hashes), installed into build/console and
# served by the console itself, so its pages need no network at run time.
$(CONSOLE_STAMP): cdcpipe/console/package.json cdcpipe/console/package-lock.json | system-deps
	mkdir -p $(CONSOLE_ASSETS)
	cp cdcpipe/console/package.json cdcpipe/console/package-lock.json $(CONSOLE_ASSETS)/
	cd $(CONSOLE_ASSETS) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

console-assets: $(CONSOLE_STAMP)

up: jars console-assets
	$(CDCPIPE) up

down:
	@if [ -x $(CDCPIPE) ]; then $(CDCPIPE) down; else echo "nothing to stop (no $(VENV))"; fi

status: venv
	$(CDCPIPE) status

check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_import_layers.py

unit: venv
	$(VENV)/bin/python -m pytest -m "not stack" $(PYTEST_ARGS)

test: jars console-assets
	$(VENV)/bin/python -m pytest --durations=20 $(PYTEST_ARGS)

demo: jars console-assets
	$(CDCPIPE) demo

# The cluster topology (three Cassandra and Kafka nodes, two Connect and Spark workers) is a
# stack of its own, in .cdcpipe-cluster: `CDCPIPE_TOPOLOGY=cluster make demo` starts it, and
# this runs its node-loss tests on it (they are skipped on the single-node stack).
test-cluster: jars console-assets
	CDCPIPE_TOPOLOGY=cluster $(VENV)/bin/python -m pytest --durations=10 -s -p no:warnings tests/test_cluster.py $(PYTEST_ARGS)

# The operations checker on demand (make test runs a bounded one): it changes public.users'
# columns, truncates it and kills services, so only on a stack whose data may go.
OPCHECK_ARGS ?= --ops 100 --budget 1800
opcheck: jars console-assets
	$(CDCPIPE) up
	$(CDCPIPE) opcheck --yes $(OPCHECK_ARGS)

bench: jars console-assets
	$(CDCPIPE) up
	$(CDCPIPE) bench

clean: down
	rm -rf build .cdcpipe .cdcpipe-cluster
