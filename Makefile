# dr-engine: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
DR := $(VENV)/bin/dr
export DO_NOT_TRACK := 1
export PREFECT_HOME ?= $(CURDIR)/.dr/prefect-home

.PHONY: setup os-packages check lint typecheck test test-fast test-full demo drill-server bench bench-quick docs docs-build clean

setup: $(VENV)/.installed

# OS packages the tests need (BIND, poppler, Chromium); installed only when run as root.
os-packages:
	@bash .ci/os-packages

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,world]'
	@touch $@

lint: setup
	$(VENV)/bin/ruff check dr_engine flows tests bench

typecheck: setup
	$(VENV)/bin/mypy

check: lint typecheck

test: setup os-packages check
	$(PY) -m pytest -q -p no:cacheprovider

# The full reliability matrix (fault injection on every action kind, crash-resume of the demo runbook).
test-full: setup os-packages
	$(PY) -m pytest -q -p no:cacheprovider -m reliability_full tests/reliability

test-fast: setup
	$(PY) -m pytest -q -x -m "not integration"

demo: setup os-packages
	$(DR) demo

# A local `prefect server` plus a serve runner with a cron-scheduled drill of DRILL_RUNBOOK,
# failover/failback deployments and readiness every 30 min. Ctrl-C stops both (by pid).
DRILL_RUNBOOK ?= sample-noop
DRILL_PORT ?= 4200
DRILL_CRON ?= 0 3 * * 1
drill-server: setup
	$(DR) schedule server --runbook $(DRILL_RUNBOOK) --port $(DRILL_PORT) --drill-cron "$(DRILL_CRON)"

bench: setup os-packages
	$(PY) bench/run.py

bench-quick: setup
	$(PY) bench/run.py --quick

# The documentation site (docs/, mkdocs.yml); the reference pages are generated from the code.
# `make test` builds it strictly and runs its console examples (tests/repo/test_docs.py).
docs: setup
	$(PY) -m mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: setup
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) .dr .mypy_cache .ruff_cache build *.egg-info
