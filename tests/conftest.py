"""Test session: a throwaway PostgreSQL cluster, fresh demo databases per test, Airflow on SQLite.

Environment is set before anything imports Airflow, so every test (and every `dag.test()`) sees
this project's dags/ folder, an isolated AIRFLOW_HOME, and the connections of the test databases.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devtools import demo_data  # noqa: E402
from devtools.pgcluster import STAT_STATEMENTS, PgCluster, find_bindir, free_port  # noqa: E402
from tests.session import _AIRFLOW_HOME, _SESSION_DIR, ARTIFACTS, ROOT, SeededDatabases  # noqa: E402 - sets the env

# pg_dump/pg_restore for the backup come from the same binaries as the throwaway cluster
os.environ.setdefault("PG_BINDIR", str(find_bindir()))

# Fixture modules, registered once for the whole suite (tests import only their helper functions).
pytest_plugins = ["tests.airflow_stack", "tests.fake_slack", "tests.gate_fixtures", "tests.consistency_fixtures",
                  "tests.backfill_fixtures", "tests.keys_fixtures", "tests.statsd_fixtures", "tests.example_fixtures"]

TEST_LISTINGS = 2000  # small: every test gets its own copy of the seeded databases


@pytest.fixture(scope="session")
def pg_cluster():
    # pg_stat_statements preloaded (and created in the seeded templates): the performance view's latency
    cluster = PgCluster(_SESSION_DIR / "pgdata", free_port(), settings=dict(STAT_STATEMENTS))
    cluster.start()
    yield cluster
    # Thrown away: no shutdown checkpoint, and the GBs of per-test clones are deleted by a detached
    # `rm -rf` rather than inside the worker's last teardown (11-14 s at the end of a CI run).
    cluster.stop(mode="immediate")
    subprocess.Popen(["rm", "-rf", str(cluster.datadir)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="session")
def _seeded_templates(pg_cluster):
    """Seed once into template databases; each test clones them (CREATE DATABASE ... TEMPLATE)."""
    pg_cluster.create_database("tpl_breederhq", drop_existing=True)
    pg_cluster.create_database("tpl_marketplace", drop_existing=True)
    counts = demo_data.build(pg_cluster.dsn("tpl_breederhq"), pg_cluster.dsn("tpl_marketplace"),
                             listings=TEST_LISTINGS)
    return counts


_db_counter = itertools.count()


def _clone(cluster: PgCluster, template: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(cluster.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    conn.close()


@pytest.fixture
def databases(pg_cluster, _seeded_templates, monkeypatch) -> SeededDatabases:
    """Fresh seeded `breederhq`/`marketplace` clones, wired to the Airflow connection ids."""
    n = next(_db_counter)
    legacy, new = f"breederhq_t{n}", f"marketplace_t{n}"
    _clone(pg_cluster, "tpl_breederhq", legacy)
    _clone(pg_cluster, "tpl_marketplace", new)
    dbs = SeededDatabases(pg_cluster, legacy, new, _seeded_templates)
    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", dbs.legacy_dsn)
    monkeypatch.setenv("AIRFLOW_CONN_MARKETPLACE_DB", dbs.new_dsn)
    return dbs


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB (SQLite) migrated once per session; needed by dag.test()."""
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_collection_modifyitems(config, items):
    """Tests that bring up real services (Airflow processes, a browser) are marked ``e2e``: everything
    under tests/e2e/ and the ``*_e2e.py`` / ``*_browser.py`` modules.

    Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``) each such module is one xdist
    group: its tests run one after another on one worker (they share services and timing
    assumptions), different modules may run on both workers.
    """
    e2e_dir = ROOT / "tests" / "e2e"
    for item in items:
        path = Path(str(item.fspath))
        if e2e_dir in path.parents or path.stem.endswith(("_e2e", "_browser")):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.xdist_group(f"services-{path.stem}"))
