"""migration_setup runs for real against the test databases."""

from __future__ import annotations

from migration_engine import control
from tests.airflow_helpers import run_dag


def test_setup_creates_control_schema(databases, airflow_db):
    state, tasks = run_dag("migration_setup")
    assert state == "success", tasks
    conn = databases.connect("legacy")
    assert control.control_schema_exists(conn, "migration_control")
    conn.close()
    # running it again changes nothing and still succeeds
    state, _ = run_dag("migration_setup")
    assert state == "success"
