# Shortcuts for ephemeral_auth development. Every target works from a fresh clone:
# dev.py creates .venv and installs the project when needed.
#
#   make demo            example project on SQLite at http://127.0.0.1:8000/
#   make test            test suite on SQLite            (ARGS="-k purge" to filter)
#   make test-postgres   test suite on PostgreSQL, race tests included
#   make test-mariadb    test suite on MariaDB, race tests included
#   make e2e             end-to-end suite (real servers, headless Chromium) on PostgreSQL
#   make lint            ruff check . and mypy ephemeral_auth
#   make bench           foundation benchmarks (bench/run.py; ARGS=--quick for a smoke run)
#   make bench-lock      the lock model: who can lock whom out, statements per login step (bench/lock_model.py)
#   make bench-all       every benchmark of docs/benchmarks.md, one after the other (about an hour)
#   make ci              everything CI runs (.ci/run)
#
# Database URLs can be overridden, e.g. make test-postgres POSTGRES_URL=postgres://me@127.0.0.1/mydb

PYTHON ?= python3
VENV_PYTHON := .venv/bin/python
POSTGRES_URL ?= postgres://ephemeral:ephemeral@127.0.0.1:5432/ephemeral_auth
MARIADB_URL ?= mysql://root:@127.0.0.1:3306/ephemeral_auth
ARGS ?=

.PHONY: demo test test-postgres test-mariadb e2e lint bench bench-lock bench-peers bench-all ci setup services

demo:
	$(PYTHON) dev.py demo

test:
	$(PYTHON) dev.py test $(ARGS)

setup:
	$(PYTHON) dev.py setup

services:
	bash .ci/services.sh

test-postgres: services
	DATABASE_URL=$(POSTGRES_URL) $(PYTHON) dev.py test $(ARGS)

test-mariadb: services
	DATABASE_URL=$(MARIADB_URL) $(PYTHON) dev.py test $(ARGS)

# pytest's exit code 5 (no e2e test collected) is not a failure.
e2e: setup services
	bash .ci/e2e-setup.sh
	DATABASE_URL=$(POSTGRES_URL) $(VENV_PYTHON) -m pytest -m e2e tests/e2e $(ARGS) || [ $$? -eq 5 ]

lint: setup
	$(VENV_PYTHON) -m ruff check .
	$(VENV_PYTHON) -m mypy ephemeral_auth
	.venv/bin/lint-imports

bench: setup
	$(VENV_PYTHON) bench/run.py $(ARGS)

bench-lock: setup services
	$(VENV_PYTHON) bench/lock_model.py $(ARGS)

# The peers measured against (django-allauth with its mfa WebAuthn, django-two-factor-auth, django-axes; mozilla-django-oidc is a
# dependency already), redis and matplotlib: pip install -e '.[bench]'. Redis must answer on 127.0.0.1:6379.
bench-peers: setup services
	$(VENV_PYTHON) -m pip install -q -e '.[bench]'

bench-all: bench-peers
	$(VENV_PYTHON) bench/run.py
	$(VENV_PYTHON) bench/two_factor_peers.py --backend postgres --rounds 7 --iterations 200 --json bench/results/two_factor_peers_postgres.json
	$(VENV_PYTHON) bench/two_factor_peers.py --backend sqlite --rounds 7 --iterations 150 --json bench/results/two_factor_peers_sqlite.json
	$(VENV_PYTHON) bench/webauthn_peers.py --backend postgres --rounds 7 --iterations 100 --json bench/results/webauthn_peers_postgres.json
	$(VENV_PYTHON) bench/webauthn_peers.py --backend sqlite --rounds 7 --iterations 100 --json bench/results/webauthn_peers_sqlite.json
	$(VENV_PYTHON) bench/alternatives_peers.py
	$(VENV_PYTHON) bench/http_load.py
	$(VENV_PYTHON) bench/table_size.py
	$(VENV_PYTHON) bench/purge_concurrent.py
	$(VENV_PYTHON) bench/sizing.py
	$(VENV_PYTHON) bench/lock_model.py

ci:
	bash .ci/run
