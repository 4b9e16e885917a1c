# Two commands for a fresh machine (Debian: apt-get install make python3-venv):
#
#   make serve            FHIR server with a synthetic county: http://127.0.0.1:8080/fhir
#   make test             the test suite (SQLite, 2 parallel workers)
#   make test-postgres    the suite against PostgreSQL ($FHIR_TEST_DATABASE_URL, or a
#                         throwaway server started by .ci/postgres.sh: apt-get install postgresql)
#
# Both create .venv if it is missing and (re)install the project into it whenever
# pyproject.toml has changed since the last install.

PYTHON ?= python3
VENV ?= .venv
DEMO ?= 200
PORT ?= 8080
HOST ?= 127.0.0.1
# Optional: a SQLAlchemy URL for `make serve` (default: the SQLite file county-fhir.sqlite here).
DATABASE_URL ?=
# Parallel pytest workers for `make test`; extra pytest arguments for every test target.
JOBS ?= 2
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-pyproject

.DEFAULT_GOAL := help
.PHONY: help serve test test-postgres install

help:
	@echo "make serve           start the FHIR server with $(DEMO) demo patients on http://$(HOST):$(PORT)/fhir"
	@echo "make test            run the test suite (SQLite, $(JOBS) workers)"
	@echo "make test-postgres   run the test suite against PostgreSQL"

install: $(STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { \
	  echo "error: Python 3.11 or newer is needed ($(PYTHON) is $$($(PYTHON) --version 2>&1)); try make PYTHON=python3.12" >&2; \
	  exit 1; }
	@echo "Creating $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: could not create $(VENV); on Debian/Ubuntu: sudo apt-get install python3-venv" >&2; \
	  exit 1; }
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@echo "Installing the project and its test tools into $(VENV) (quietly; takes a minute the first time)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-input -e '.[test]'
	@touch $@

serve: $(STAMP)
	$(PY) -m fhir_server serve --host $(HOST) --port $(PORT) --demo $(DEMO) $(if $(DATABASE_URL),--database-url '$(DATABASE_URL)')

# Always SQLite: every xdist worker gets its own database file (tmp_path_factory is per worker).
test: $(STAMP)
	FHIR_TEST_DATABASE_URL= $(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

# Each xdist worker creates its own database next to the one in FHIR_TEST_DATABASE_URL.
test-postgres: $(STAMP)
	@if [ -n "$$FHIR_TEST_DATABASE_URL" ]; then \
	  echo "Testing against FHIR_TEST_DATABASE_URL"; \
	  $(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS); \
	else \
	  echo "FHIR_TEST_DATABASE_URL not set: starting a throwaway PostgreSQL (.ci/postgres.sh)"; \
	  bash .ci/postgres.sh run $(PY) -m pytest -n $(JOBS) $(PYTEST_ARGS); \
	fi
