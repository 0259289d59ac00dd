"""migration_setup runs for real against the test databases."""

from __future__ import annotations

import json

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


def test_missing_connection_fails_naming_it_and_pages(databases, airflow_db, fake_slack, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MARKETPLACE_DB")
    state, tasks = run_dag("migration_setup")
    assert state == "failed"
    assert tasks["check_connections"] == "failed"
    pages = fake_slack.messages()
    assert len(pages) == 1
    text = json.dumps(pages[0])
    assert "marketplace_db" in text and "AIRFLOW_CONN_MARKETPLACE_DB" in text
    assert "check_connections" in text and "migration_setup" in text


def test_missing_table_is_named(databases, airflow_db, fake_slack):
    databases.query("new", "ALTER TABLE marketplace.providers RENAME TO providers_gone")
    state, tasks = run_dag("migration_setup")
    assert state == "failed" and tasks["check_tables"] == "failed"
    assert "marketplace.providers does not exist" in json.dumps(fake_slack.messages())


def test_dry_run_prints_the_plan_and_changes_nothing(databases, airflow_db, caplog):
    from tests.snapshots import snapshot, unchanged

    before = {side: snapshot(getattr(databases, f"{side}_dsn")) for side in ("legacy", "new")}
    state, tasks = run_dag("migration_setup", {"dry_run": True})
    assert state == "success", tasks
    after = {side: snapshot(getattr(databases, f"{side}_dsn")) for side in ("legacy", "new")}
    for side in before:
        assert unchanged(before[side], after[side]) == [], side
    conn = databases.connect("legacy")
    assert not control.control_schema_exists(conn, "migration_control")
    conn.close()
    assert "DRY RUN: the control schema upgrade would send" in caplog.text
    assert 'CREATE TABLE IF NOT EXISTS "migration_control".feature_flags' in caplog.text
