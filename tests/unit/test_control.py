"""Control schema contract against a real Postgres: idempotent creation, audited flags, stats."""

from __future__ import annotations

import threading

import psycopg2
import pytest

from migration_engine import control
from migration_engine.appclient import ControlClient, minute_bucket, p95

SCHEMA = "migration_control"


@pytest.fixture
def legacy(databases):
    conn = databases.connect("legacy")
    control.ensure_control_schema(conn, SCHEMA)
    yield conn
    conn.close()


def _catalog(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY 1, 2", (SCHEMA,))
        cols = cur.fetchall()
        cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s ORDER BY 1", (SCHEMA,))
        return cols, cur.fetchall()


def test_creation_is_idempotent_and_concurrency_safe(databases, legacy):
    before = _catalog(legacy)
    errors = []

    def again():
        try:
            c = databases.connect("legacy")
            control.ensure_control_schema(c, SCHEMA)
            c.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=again) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert _catalog(legacy) == before
    tables = {t for t, _c, _d in before[0]}
    assert {"feature_flags", "dual_write_stats", "shadow_read_stats", "path_stats", "gate_results",
            "audit_ledger", "alerts", "step_state", "shadow_read_mismatches"} <= tables


def test_default_flags(legacy):
    assert control.get_flags(legacy, SCHEMA) == {
        "dual_write_enabled": False, "read_new_pct": 0, "shadow_read_pct": 0, "write_to_new": False,
        "keep_old_sync": False, "maintenance_mode": False}


def test_set_flag_is_audited_atomically(legacy):
    change = control.set_flag(legacy, SCHEMA, "read_new_pct", 25, actor="alice", reason="step 2",
                              context={"dag_id": "d"})
    assert (change.old_value, change.new_value) == (0, 25)
    assert control.get_flags(legacy, SCHEMA)["read_new_pct"] == 25
    with legacy.cursor() as cur:
        cur.execute(f"SELECT actor, action, target, details, reason FROM {SCHEMA}.audit_ledger")
        rows = cur.fetchall()
    assert rows == [("alice", "set_flag", "read_new_pct", {"old": 0, "new": 25, "dag_id": "d"}, "step 2")]


@pytest.mark.parametrize("name, value, message", [
    ("read_new_pct", 150, "between 0 and 100"),
    ("read_new_pct", True, "whole number"),
    ("dual_write_enabled", "yes", "true/false"),
    ("dual_writes", True, "unknown feature flag"),
])
def test_bad_flag_values_are_refused_and_nothing_changes(legacy, name, value, message):
    with pytest.raises(control.ControlError, match=message):
        control.set_flag(legacy, SCHEMA, name, value, actor="bob", reason="x")
    with legacy.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {SCHEMA}.audit_ledger")
        assert cur.fetchone()[0] == 0


def test_database_refuses_bad_flag_values_from_the_application(legacy):
    with legacy.cursor() as cur, pytest.raises(psycopg2.errors.CheckViolation):
        cur.execute(f"UPDATE {SCHEMA}.feature_flags SET value = '250' WHERE name = 'read_new_pct'")
    legacy.rollback()


def test_ledger_is_append_only(legacy):
    control.audit(legacy, SCHEMA, actor="a", action="phase_start", target="p1")
    for stmt in (f"UPDATE {SCHEMA}.audit_ledger SET actor = 'x'", f"DELETE FROM {SCHEMA}.audit_ledger",
                 f"TRUNCATE {SCHEMA}.audit_ledger"):
        with legacy.cursor() as cur, pytest.raises(psycopg2.Error, match="append-only"):
            cur.execute(stmt)
        legacy.rollback()


def test_missing_control_schema_is_named(databases):
    conn = databases.connect("legacy")
    with pytest.raises(control.ControlError, match="does not exist"):
        control.get_flags(conn, "nowhere")
    conn.close()


def test_app_client_aggregates_and_merges_instances(databases, legacy):
    now = [1_800_000_000.0]
    clients = [ControlClient(lambda: databases.connect("legacy"), SCHEMA, instance=i, clock=lambda: now[0])
               for i in ("a", "b")]
    for i in range(100):
        clients[i % 2].record_dual_write("listings", ok=i % 10 != 0, latency_ms=float(i))
        clients[i % 2].record_request("listings", operation="read", path="new", ok=i != 3, latency_ms=1.0)
    clients[0].record_shadow_read("listings", matched=False, cohort="c10", key=42, diffs={"title": ["a", "b"]})
    clients[0].record_shadow_read("listings", matched=True, cohort="c10")
    for c in clients:
        c.flush()
    clients[0].record_dual_write("listings", ok=False, latency_ms=999.0)
    clients[0].flush()  # a second flush into the same minute adds up
    with legacy.cursor() as cur:
        cur.execute(f"SELECT sum(attempts), sum(failures), max(p95_latency_ms), min(bucket) "
                    f"FROM {SCHEMA}.dual_write_stats WHERE entity = 'listings'")
        attempts, failures, worst, bucket = cur.fetchone()
        cur.execute(f"SELECT sum(requests), sum(errors) FROM {SCHEMA}.path_stats")
        reqs, errs = cur.fetchone()
        cur.execute(f"SELECT reads_compared, mismatches FROM {SCHEMA}.shadow_read_stats")
        shadow = cur.fetchall()
        cur.execute(f"SELECT entity_key, cohort, diffs FROM {SCHEMA}.shadow_read_mismatches")
        examples = cur.fetchall()
    assert (attempts, failures, worst) == (101, 11, 999.0)
    assert bucket == minute_bucket(now[0])
    assert (reqs, errs) == (100, 1)
    assert shadow == [(2, 1)]
    assert examples == [("42", "c10", {"title": ["a", "b"]})]


def test_app_client_keeps_stats_when_flush_fails(databases, legacy):
    client = ControlClient(lambda: databases.connect("legacy"), "no_such_schema", instance="x")
    client.record_dual_write("listings", ok=True, latency_ms=5)
    with pytest.raises(psycopg2.Error):
        client.flush()
    client.schema = SCHEMA
    client.flush()
    with legacy.cursor() as cur:
        cur.execute(f"SELECT attempts FROM {SCHEMA}.dual_write_stats WHERE instance = 'x'")
        assert cur.fetchall() == [(1,)]


def test_app_client_flag_cache(databases, legacy):
    now = [0.0]
    client = ControlClient(lambda: databases.connect("legacy"), SCHEMA, flag_ttl=5, clock=lambda: now[0])
    assert client.flag("dual_write_enabled") is False
    control.set_flag(legacy, SCHEMA, "dual_write_enabled", True, actor="t", reason="t")
    assert client.flag("dual_write_enabled") is False  # cached
    now[0] = 6
    assert client.flag("dual_write_enabled") is True


def test_p95_nearest_rank():
    assert p95([]) is None
    assert p95(list(range(1, 101))) == 95
    assert p95([7.0]) == 7.0
