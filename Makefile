# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
export JOURNAL_INSTANCE ?= $(CURDIR)/instance

.PHONY: run test lint typecheck dbcheck pytest bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Reinstall when the dependency list changes.
$(VENV)/.installed: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@

system-deps:
	sh scripts/install-debian-packages.sh

run: system-deps $(VENV)/.installed
	$(BIN)/python scripts/dev_env.py $(JOURNAL_INSTANCE)
	set -a; . $(JOURNAL_INSTANCE)/dev.env; set +a; \
	$(FLASK) db upgrade && \
	$(FLASK) demo seed && \
	$(FLASK) demo logins && \
	$(FLASK) run --host 127.0.0.1 --port 5000

lint: $(VENV)/.installed
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# Fails when the models and the migrations drift apart (alembic check).
dbcheck: $(VENV)/.installed
	rm -rf $(CURDIR)/build/dbcheck && mkdir -p $(CURDIR)/build/dbcheck
	JOURNAL_TESTING=1 JOURNAL_DATABASE_URL=sqlite:///$(CURDIR)/build/dbcheck/check.db \
	  sh -c '$(FLASK) db upgrade && $(FLASK) db check'

pytest: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

test: system-deps $(VENV)/.installed lint typecheck dbcheck pytest

bench: system-deps $(VENV)/.installed
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build instance .pytest_cache .mypy_cache .ruff_cache
