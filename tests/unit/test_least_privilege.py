"""The application's role reads flags and writes stats, and can change nothing else (real Postgres roles)."""

from __future__ import annotations

import psycopg2
import pytest

from migration_engine import control
from migration_engine.appclient import ControlClient

SCHEMA = "migration_control"


@pytest.fixture
def app_role(databases):
    role = f"app_{databases.legacy_name}"
    conn = databases.connect("legacy")
    control.ensure_control_schema(conn, SCHEMA)
    with conn.cursor() as cur:
        cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
    conn.commit()
    control.grant_application_role(conn, SCHEMA, role)
    control.grant_application_role(conn, SCHEMA, role)  # idempotent
    yield role
    with conn.cursor() as cur:
        cur.execute(f'DROP OWNED BY "{role}"')
        cur.execute(f'DROP ROLE "{role}"')
    conn.commit()
    conn.close()


def _as_app(databases, role):
    return psycopg2.connect(databases.legacy_dsn.replace("postgres@", f"{role}@"))


def test_the_application_reads_flags_and_writes_stats(databases, app_role):
    client = ControlClient(lambda: _as_app(databases, app_role), SCHEMA, instance="app-1")
    assert client.flags(refresh=True)["dual_write_enabled"] is False
    client.record_dual_write("listings", ok=True, latency_ms=12)
    client.record_shadow_read("listings", matched=False, cohort="all")
    client.record_request("listings", operation="read", path="old", ok=True, latency_ms=3)
    client.flush()
    client.record_dual_write("listings", ok=False, latency_ms=40)
    client.flush()  # the upsert path (UPDATE of an existing minute) is allowed too
    client.close()
    rows = databases.query("legacy", f"SELECT sum(attempts), sum(failures) FROM {SCHEMA}.dual_write_stats")
    assert rows == [(2, 1)]


@pytest.mark.parametrize("statement", [
    f"UPDATE {SCHEMA}.feature_flags SET value = 'true' WHERE name = 'dual_write_enabled'",
    f"INSERT INTO {SCHEMA}.audit_ledger (actor, action, target, details, reason) "
    "VALUES ('app', 'set_flag', 'write_to_new', '{}', 'sneaky')",
    f"DELETE FROM {SCHEMA}.dual_write_stats",
    f"INSERT INTO {SCHEMA}.gate_results (gate, status, figures, reason) VALUES ('x', 'passed', '{{}}', '')",
    f"UPDATE {SCHEMA}.step_state SET status = 'verified'",
    f"SELECT * FROM {SCHEMA}.slack_approvals",
])
def test_the_application_cannot_touch_anything_else(databases, app_role, statement):
    conn = _as_app(databases, app_role)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_set_flag_as_the_application_is_refused_and_nothing_changes(databases, app_role):
    conn = _as_app(databases, app_role)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            control.set_flag(conn, SCHEMA, "write_to_new", True, actor="app", reason="should not work")
    finally:
        conn.close()
    owner = databases.connect("legacy")
    assert control.current_flags(owner, SCHEMA)["write_to_new"] is False
    owner.close()
