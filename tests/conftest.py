"""Test session: a throwaway PostgreSQL cluster, fresh demo databases per test, Airflow on SQLite.

Environment is set before anything imports Airflow, so every test (and every `dag.test()`) sees
this project's dags/ folder, an isolated AIRFLOW_HOME, and the connections of the test databases.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / ".test-artifacts"

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="zdm-tests-"))
os.chmod(_SESSION_DIR, 0o755)  # the postgres user must traverse it when we run as root
_AIRFLOW_HOME = _SESSION_DIR / "airflow"
_AIRFLOW_HOME.mkdir()

os.environ.update({
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    "GX_ANALYTICS_ENABLED": "false",
    "MIGRATION_CONFIG": str(ROOT / "include" / "migration.yaml"),
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
})
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devtools import demo_data  # noqa: E402
from devtools.pgcluster import PgCluster, find_bindir, free_port  # noqa: E402

# pg_dump/pg_restore for the backup come from the same binaries as the throwaway cluster
os.environ.setdefault("PG_BINDIR", str(find_bindir()))

# Fixture modules, registered once for the whole suite (tests import only their helper functions).
pytest_plugins = ["tests.fake_slack", "tests.gate_fixtures", "tests.consistency_fixtures"]

TEST_LISTINGS = 2000  # small: every test gets its own copy of the seeded databases


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PgCluster(_SESSION_DIR / "pgdata", free_port())
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def _seeded_templates(pg_cluster):
    """Seed once into template databases; each test clones them (CREATE DATABASE ... TEMPLATE)."""
    pg_cluster.create_database("tpl_breederhq", drop_existing=True)
    pg_cluster.create_database("tpl_marketplace", drop_existing=True)
    counts = demo_data.build(pg_cluster.dsn("tpl_breederhq"), pg_cluster.dsn("tpl_marketplace"),
                             listings=TEST_LISTINGS)
    return counts


_db_counter = itertools.count()


class TestDatabases:
    """DSNs of one test's private legacy and new databases (clones of the seeded templates)."""

    def __init__(self, cluster: PgCluster, legacy: str, new: str, counts: dict[str, int]):
        self.cluster = cluster
        self.legacy_name = legacy
        self.new_name = new
        self.counts = counts

    @property
    def legacy_dsn(self) -> str:
        return self.cluster.dsn(self.legacy_name)

    @property
    def new_dsn(self) -> str:
        return self.cluster.dsn(self.new_name)

    def connect(self, side: str = "legacy"):
        import psycopg2

        return psycopg2.connect(self.legacy_dsn if side == "legacy" else self.new_dsn)

    def query(self, side: str, text: str, params=None):
        """Test-side assertion helper (tests may inline SQL; product code may not)."""
        conn = self.connect(side)
        try:
            with conn.cursor() as cur:
                cur.execute(text, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.commit()
            conn.close()


def _clone(cluster: PgCluster, template: str, name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(cluster.dsn())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    conn.close()


@pytest.fixture
def databases(pg_cluster, _seeded_templates, monkeypatch) -> TestDatabases:
    """Fresh seeded `breederhq`/`marketplace` clones, wired to the Airflow connection ids."""
    n = next(_db_counter)
    legacy, new = f"breederhq_t{n}", f"marketplace_t{n}"
    _clone(pg_cluster, "tpl_breederhq", legacy)
    _clone(pg_cluster, "tpl_marketplace", new)
    dbs = TestDatabases(pg_cluster, legacy, new, _seeded_templates)
    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", dbs.legacy_dsn)
    monkeypatch.setenv("AIRFLOW_CONN_MARKETPLACE_DB", dbs.new_dsn)
    return dbs


_migrated: dict[str, str] = {}


def _migrate_airflow_db() -> None:
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=300)
    _migrated["error"] = "" if proc.returncode == 0 else f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def pytest_sessionstart(session):
    """Migrate Airflow's metadata DB before collection: test modules import Airflow (the layer), which
    opens the SQLite file; a migration after that left this process without some tables ("no such
    table: task_instance") depending on which modules were collected."""
    if not session.config.option.collectonly:
        _migrate_airflow_db()


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata DB (SQLite) migrated once per session; needed by dag.test()."""
    if "error" not in _migrated:
        _migrate_airflow_db()
    if _migrated["error"]:
        raise RuntimeError(f"airflow db migrate failed:\n{_migrated['error']}")
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e/ brings up real services (Airflow, a browser): marked ``e2e``."""
    e2e_dir = ROOT / "tests" / "e2e"
    for item in items:
        if e2e_dir in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
