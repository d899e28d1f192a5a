# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app wsgi
export JOURNAL_INSTANCE ?= $(CURDIR)/instance

.PHONY: run test lint typecheck dbcheck security pytest bench screenshots system-deps clean translations translations-update constraints

# The exact versions tested (scripts/constraints.py): installs take them, `make constraints`
# resolves setup.cfg afresh and writes them.
CONSTRAINTS := constraints.txt

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list or the pinned versions change; fail when the environment
# does not hold exactly the pinned versions.
$(VENV)/.installed: setup.cfg pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install -q -c $(CONSTRAINTS) --upgrade pip setuptools
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e '.[test]'
	$(BIN)/python scripts/constraints.py check
	touch $@

# Resolve setup.cfg afresh (the newest versions it allows) in a new environment and pin them in
# constraints.txt. Run it after changing setup.cfg, or to take newer versions; commit the result.
CONSTRAINTS_VENV := build/constraints-venv
constraints:
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	$(CONSTRAINTS_VENV)/bin/pip install -q --upgrade pip setuptools
	$(CONSTRAINTS_VENV)/bin/pip install -q -e '.[test]'
	$(CONSTRAINTS_VENV)/bin/python scripts/constraints.py freeze
	rm -rf $(CONSTRAINTS_VENV)

system-deps:
	sh scripts/install-debian-packages.sh

# `make run PORT=5077` serves on another port. Every `flask --app wsgi ...` reads the
# development settings from instance/dev.env by itself (wsgi.py), in this or any terminal.
PORT ?= 5000
run: system-deps $(VENV)/.installed translations
	$(BIN)/python scripts/dev_env.py $(JOURNAL_INSTANCE)
	$(FLASK) db upgrade && \
	$(FLASK) demo seed && \
	$(FLASK) demo logins && \
	$(FLASK) run --host 127.0.0.1 --port $(PORT)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# Fails when the models and the migrations drift apart (alembic check).
dbcheck: $(VENV)/.installed
	rm -rf $(CURDIR)/build/dbcheck && mkdir -p $(CURDIR)/build/dbcheck
	JOURNAL_TESTING=1 JOURNAL_DATABASE_URL=sqlite:///$(CURDIR)/build/dbcheck/check.db \
	  sh -c '$(FLASK) db upgrade && $(FLASK) db check'

# Known vulnerabilities in the pinned dependencies (pip-audit on constraints.txt, PyPI's data).
# When PyPI's vulnerability service cannot be reached it says SKIPPED, never passed (and fails
# where JOURNAL_REQUIRE_AUDIT=1).
security: $(VENV)/.installed
	$(BIN)/python scripts/audit_dependencies.py

pytest: $(VENV)/.installed translations
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

test: system-deps $(VENV)/.installed translations lint typecheck dbcheck security pytest

# Translations: the .po catalogs (kk, ru, en) are sources; the .mo files are build output.
TRANSLATIONS := journal/translations
# Keep in step with tests/test_translations.py (EXTRACT_ARGS).
BABEL_EXTRACT := $(BIN)/pybabel -q extract -F babel.cfg -k _l -k lazy_gettext --add-location=file \
	--sort-output -w 100 -o build/messages.pot journal auth exports archive

translations: $(VENV)/.installed
	$(BIN)/pybabel -q compile -d $(TRANSLATIONS)

# Re-extract every UI string and merge into the catalogs; new strings arrive untranslated (or
# fuzzy) and tests/test_translations.py names them until kk and ru are filled in.
translations-update: $(VENV)/.installed
	mkdir -p build
	$(BABEL_EXTRACT)
	$(BIN)/pybabel -q update -i build/messages.pot -d $(TRANSLATIONS) -w 100 --ignore-obsolete
	$(BIN)/python -m tests.test_translations || true  # lists what still needs kk and ru

# The pictures in the README and docs/: each role's home, the grid, the class summary and the
# portal, in kk and ru, from the demo school in real Chromium (make test takes the same pictures
# into test-artifacts/ and checks them, but never writes docs/).
screenshots: system-deps $(VENV)/.installed translations
	JOURNAL_SCREENSHOTS_DIR=docs/screenshots JOURNAL_SCREENSHOT_LANGUAGES="kk ru" \
		$(BIN)/python -m pytest -q tests/e2e/test_screenshots.py

bench: system-deps $(VENV)/.installed
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build instance .pytest_cache .mypy_cache .ruff_cache
