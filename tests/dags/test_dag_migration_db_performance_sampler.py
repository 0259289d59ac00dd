"""migration_db_performance_sampler runs for real: a sample of both test databases lands in the
control schema, and the migration's figures arrive as StatsD gauges at a real UDP listener on
127.0.0.1 (Airflow's own ``[metrics] statsd_*`` settings, the client its task runner initialises;
fixture ``statsd`` in tests/statsd_fixtures.py)."""

from __future__ import annotations

import pytest

from migration_engine import control_schema
from tests.airflow_helpers import run_dag, xcom
from tests.snapshots import snapshot, unchanged

pytestmark = pytest.mark.timeout(300)

DAG_ID = "migration_db_performance_sampler"
SCHEMA = "migration_control"


def _prepare(databases) -> None:
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA)
    conn.close()
    databases.query("legacy", f"""
        INSERT INTO {SCHEMA}.gate_results (gate, status, reason, evaluated_at) VALUES
            ('dual_write_health', 'passed', 'ok', now() - interval '2 minutes'),
            ('dual_write_health', 'critical', 'success 89% < 90%', now() - interval '1 minute'),
            ('shadow_reads', 'waiting', 'too few reads', now());
        INSERT INTO {SCHEMA}.shadow_read_stats (entity, bucket, reads_compared, mismatches)
            VALUES ('listings', date_trunc('minute', now()), 400, 8);
        INSERT INTO {SCHEMA}.path_stats (entity, bucket, operation, path, requests, errors, p95_latency_ms)
            VALUES ('listings', date_trunc('minute', now()), 'read', 'new', 200, 3, 31.5),
                   ('listings', date_trunc('minute', now()), 'read', 'old', 800, 0, 12.0);
        WITH run AS (
            INSERT INTO {SCHEMA}.backfill_runs (entity, key_column, key_min, key_max, rows_total, parallelism)
            VALUES ('listings', 'id', 1, 1000, 1000, 2) RETURNING id)
        INSERT INTO {SCHEMA}.backfill_ranges (run_id, range_no, key_lo, key_hi, last_key, status, rows_read,
                                              rows_written, rows_per_second)
        SELECT id, n, lo, hi, lo + 100, 'running', 300, 290, 120.5
        FROM run, (VALUES (0, 0, 500), (1, 500, 1000)) AS r(n, lo, hi)
    """)
    for _ in range(20):
        databases.query("legacy", "SELECT count(*) FROM public.marketplace_listings WHERE id > 3")
        databases.query("new", "SELECT count(*) FROM marketplace.service_listings WHERE id > 3")


def test_a_run_samples_both_databases_and_emits_the_metrics(databases, airflow_db, statsd):
    _prepare(databases)
    state, tasks = run_dag(DAG_ID)
    assert state == "success", tasks
    assert tasks == {"sample": "success", "emit_metrics": "success"}
    rows = databases.query("legacy", f"SELECT db, latency_source FROM {SCHEMA}.perf_samples ORDER BY db")
    assert rows == [("legacy", "pg_stat_statements"), ("new", "pg_stat_statements")]

    got = statsd.gauges()
    p = "airflow.zdm."
    assert got[p + "gate.dual_write_health.status"] == 3  # critical: the latest evaluation, not the earlier pass
    assert got[p + "gate.shadow_reads.status"] == 1       # waiting
    assert got[p + "backfill.listings.progress_pct"] == 60.0 and got[p + "backfill.listings.rows_per_second"] == 241
    assert got[p + "backfill.listings.rows_written"] == 580 and got[p + "backfill.listings.running"] == 1
    assert got[p + "shadow.listings.mismatch_pct"] == 2.0
    assert got[p + "path.listings.read.new.error_pct"] == 1.5 and got[p + "path.listings.read.old.error_pct"] == 0
    assert got[p + "path.listings.read.new.p95_ms"] == 31.5
    assert got[p + "db.legacy.table.public__marketplace_listings.p95_ms"] > 0
    assert got[p + "db.new.table.marketplace__service_listings.p95_ms"] > 0
    assert 0 < got[p + "db.legacy.connections_pct"] < 100 and got[p + "db.legacy.database_bytes"] > 0
    assert got[p + "db.legacy.backup_free_bytes"] > 0 and "airflow.zdm.db.new.backup_free_bytes" not in got


def test_a_dry_run_stores_nothing(databases, airflow_db, statsd):
    _prepare(databases)
    before_l, before_n = snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)
    state, tasks = run_dag(DAG_ID, {"dry_run": True})
    assert state == "success", tasks
    assert unchanged(before_l, snapshot(databases.legacy_dsn)) == []
    assert unchanged(before_n, snapshot(databases.new_dsn)) == []


def test_an_outdated_control_schema_fails_naming_migration_setup(databases, airflow_db, fake_slack):
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA, target=5)
    conn.close()
    state, tasks = run_dag(DAG_ID)
    assert state == "failed" and tasks["sample"] == "failed", tasks
    assert "run migration_setup" in str(fake_slack.messages())


def test_the_sample_task_returns_what_it_stored(databases, airflow_db):
    _prepare(databases)
    from tests.airflow_helpers import get_dag

    dr = get_dag(DAG_ID).test()
    result = xcom(dr, "sample")
    assert result["dry_run"] is False and result["steps"][0]["step_id"] == "perf.sample"
    assert any("latency from pg_stat_statements" in n for n in result["steps"][0]["notes"])
