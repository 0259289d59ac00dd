"""The test session's environment: made once, before anything imports Airflow.

Why a module of its own: ``tests/conftest.py`` is imported by pytest as ``conftest``; a test module
that imported ``tests.conftest`` for these names would run the conftest a second time under that
name - a second session directory and a second ``AIRFLOW_HOME`` in ``os.environ`` after Airflow had
read the first, so the in-process Airflow and ``airflow db migrate`` used different metadata DBs
("no such table: task_instance", "Database migration required" for api-servers). Import from here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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


class SeededDatabases:
    """DSNs of one test's private legacy and new databases (clones of the seeded templates)."""

    def __init__(self, cluster, legacy: str, new: str, counts: dict[str, int]):
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
