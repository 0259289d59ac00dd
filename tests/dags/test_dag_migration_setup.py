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
    assert state == "failed" and tasks["preflight"] == "failed"
    assert "marketplace.providers does not exist" in json.dumps(fake_slack.messages())


def test_preflight_refuses_a_lossy_mapping_and_a_missing_unique_before_anything_changes(databases, airflow_db,
                                                                                          fake_slack):
    """Issue 12: numeric -> bigint without a transform and no UNIQUE on the legacy-id column fail the
    first config task, both named by config path in one message; no control schema, no change."""
    from tests.snapshots import snapshot, unchanged

    databases.query("legacy", "ALTER TABLE public.marketplace_listings ALTER COLUMN price_cents TYPE numeric(12,2)")
    databases.query("new", "ALTER TABLE marketplace.service_listings "
                           "DROP CONSTRAINT service_listings_legacy_listing_id_key")
    before = {side: snapshot(getattr(databases, f"{side}_dsn")) for side in ("legacy", "new")}
    state, tasks = run_dag("migration_setup")
    assert state == "failed" and tasks["preflight"] == "failed", tasks
    assert tasks["check_connections"] == "success" and tasks["create_control_schema"] == "upstream_failed"
    text = json.dumps(fake_slack.messages())
    assert "entities.listings.columns[2].new: public.marketplace_listings.price_cents (numeric(12,2)) into " \
           "marketplace.service_listings.price_cents (bigint)" in text
    assert "entities.listings.legacy_id_column: marketplace.service_listings.legacy_listing_id has no UNIQUE" in text
    after = {side: snapshot(getattr(databases, f"{side}_dsn")) for side in ("legacy", "new")}
    for side in before:
        assert unchanged(before[side], after[side]) == [], side
    conn = databases.connect("legacy")
    assert not control.control_schema_exists(conn, "migration_control")
    conn.close()


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
