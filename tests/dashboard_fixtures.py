"""Known figures in a control schema, shared by the dashboard's API test and its browser test.

Stats are written with the application-side upserts (include/sql/control/*_upsert.sql) and flags
with ``control.set_flag``, exactly as the application and the DAGs write them; the rest (steps,
gates, alerts, a month of stats) is test-side SQL. ``EXPECTED`` holds what the page must show.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from migration_engine import control, sqlfiles

SCHEMA = "migration_control"

# What the seeded figures must render as (the page formats percentages with 2 decimals).
EXPECTED = {
    "dual_write_success_pct_24h": "94.00%",   # 1000 attempts, 60 failures
    "dual_write_attempts_24h": "1,000",
    "dual_write_failures_24h": "60",
    "dual_write_success_pct_1h": "95.00%",    # 600 attempts, 30 failures
    "dual_write_p95_ms_1h": "120 ms",
    "shadow_match_pct_24h": "99.95%",         # 2000 compared, 1 mismatch
    "shadow_mismatches_24h": "1",
    "shadow_reads_24h": "2,000",
    "shadow_mismatch_pct_24h": "0.050%",
    "shadow_read_pct": "10%",
    "read_new_pct": "25%",
    "read_old_error_pct_1h": "0.25%",         # 1600 requests, 4 errors
    "read_new_error_pct_1h": "0.50%",         # 400 requests, 2 errors
    "read_error_increase_points": "+0.25 points",
    "write_cutover_state": "dual write",
    "open_alerts": "1",
}


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def seed_known_figures(conn, now: datetime | None = None) -> datetime:
    """Create the control schema and write the figures in ``EXPECTED``; returns the ``now`` used."""
    now = now or datetime.now(UTC)
    control.ensure_control_schema(conn, SCHEMA)
    recent, older = _minute(now - timedelta(minutes=20)), _minute(now - timedelta(hours=5))
    with conn.cursor() as cur:
        for bucket, attempts, failures, p95 in ((recent, 600, 30, 120.0), (older, 400, 30, 480.0)):
            sqlfiles.run(cur, "control/dual_write_upsert.sql", {"schema": SCHEMA},
                         {"entity": "listings", "bucket": bucket, "instance": "app-1", "attempts": attempts,
                          "failures": failures, "p95_latency_ms": p95})
        for bucket, reads, mismatches in ((recent, 1500, 1), (_minute(now - timedelta(hours=3)), 500, 0)):
            sqlfiles.run(cur, "control/shadow_read_upsert.sql", {"schema": SCHEMA},
                         {"entity": "listings", "bucket": bucket, "cohort": "all", "instance": "app-1",
                          "reads_compared": reads, "mismatches": mismatches})
        sqlfiles.run(cur, "control/shadow_mismatch_insert.sql", {"schema": SCHEMA},
                     {"entity": "listings", "entity_key": "4711", "cohort": "all",
                      "diffs": json.dumps({"price_cents": [1999, 1899]})})
        for operation, path, requests, errors in (("read", "old", 1600, 4), ("read", "new", 400, 2),
                                                  ("write", "old", 800, 0)):
            sqlfiles.run(cur, "control/path_stats_upsert.sql", {"schema": SCHEMA},
                         {"entity": "listings", "bucket": recent, "operation": operation, "path": path,
                          "instance": "app-1", "requests": requests, "errors": errors, "p95_latency_ms": 35.0,
                          "latency_histogram": None})
        cur.execute(
            f"INSERT INTO {SCHEMA}.step_state (step_id, phase, status) VALUES "
            "('add_columns', 'phase1', 'verified'), "
            "('create_indexes', 'phase1', 'verified'), "
            "('enable_dual_write', 'phase2', 'applied')")
        cur.execute(
            f"INSERT INTO {SCHEMA}.alerts (dedup_key, severity, status, title, last_text, occurrences) VALUES "
            "('dw:listings', 'critical', 'open', 'Dual-write success below 95%', '94.0% over 1h', 3), "
            "('old:thing', 'warning', 'resolved', 'Resolved earlier', '', 1)")
    conn.commit()
    for name, value in (("dual_write_enabled", True), ("shadow_read_pct", 10), ("read_new_pct", 25)):
        control.set_flag(conn, SCHEMA, name, value, actor="test", reason=f"dashboard test sets {name}")
    control.audit(conn, SCHEMA, actor="alice", action="approve", target="read_cutover_25",
                  details={"approved_pct": 25}, reason="error rates look fine")
    gates = (
        ("dual_write_health", "failed", {"success_pct": 88.1}, "below 90%", "migration_phase2_dual_write"),
        ("dual_write_health", "passed", {"success_pct": 99.2, "attempts": 5000}, "99.2% >= 99%",
         "migration_phase2_dual_write"),
        ("shadow_match", "waiting", {"reads": 800, "min_reads": 1000}, "not enough reads yet",
         "migration_phase4_validation"),
        ("consistency_fresh", "failed", {"age_minutes": 180}, "last consistency run is 3 h old",
         "migration_phase4_validation"),
    )
    for gate, status, figures, reason, dag_id in gates:
        control.record_gate_result(conn, SCHEMA, gate=gate, status=status, figures=figures, reason=reason,
                                   dag_id=dag_id, run_id="manual__1")
    return now


def create_consistency_runs(conn) -> dict[str, int]:
    """Three runs through the consistency engine's own store: passed (moved 2 h back), failed, running."""
    from migration_engine.consistency import store

    passed = store.start_run(conn, SCHEMA, kind="full", dag_id="migration_phase3_data_migration", run_id="r1")
    store.finish_run(conn, SCHEMA, passed, status="passed", failed_checks=[],
                     summary={"status": "passed", "checked": 5, "failed_checks": [], "warnings": []})
    failed = store.start_run(conn, SCHEMA, kind="diff", dag_id="migration_consistency_hourly", run_id="r2")
    store.finish_run(conn, SCHEMA, failed, status="failed", failed_checks=["listings_diff"],
                     summary={"status": "failed", "checked": 3, "failed_checks": ["listings_diff"], "warnings": []})
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {SCHEMA}.consistency_runs SET started_at = started_at - interval '130 minutes', "
                    "finished_at = finished_at - interval '130 minutes' WHERE id = %s", (passed,))
    conn.commit()
    running = store.start_run(conn, SCHEMA, kind="diff", dag_id="migration_consistency_hourly", run_id="r3")
    return {"passed": passed, "failed": failed, "running": running}


def seed_month_of_stats(conn, now: datetime, *, entities: int = 2, gates: int = 6) -> dict[str, int]:
    """30 days of per-minute stats (43 200 buckets per series) and per-minute gate evaluations."""
    end = _minute(now)
    params = {"start": end - timedelta(days=30) + timedelta(minutes=1), "end": end, "entities": entities}
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO {SCHEMA}.dual_write_stats (entity, bucket, instance, attempts, failures, p95_latency_ms) "
            "SELECT 'entity_' || e, b, 'app-1', 100, (extract(minute FROM b)::int %% 3), 50 + e "
            "FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS b, "
            "generate_series(1, %(entities)s) AS e", params)
        cur.execute(
            f"INSERT INTO {SCHEMA}.shadow_read_stats (entity, bucket, cohort, instance, reads_compared, mismatches) "
            "SELECT 'entity_' || e, b, c, 'app-1', 40, (extract(minute FROM b)::int = 0)::int "
            "FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS b, "
            "generate_series(1, %(entities)s) AS e, unnest(ARRAY['all', 'pro']) AS c", params)
        cur.execute(
            f"INSERT INTO {SCHEMA}.path_stats (entity, bucket, operation, path, instance, requests, errors) "
            "SELECT 'entity_' || e, b, op, p, 'app-1', 200, (extract(minute FROM b)::int %% 7 = 0)::int "
            "FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS b, "
            "generate_series(1, %(entities)s) AS e, unnest(ARRAY['read', 'write']) AS op, "
            "unnest(ARRAY['old', 'new']) AS p", params)
        cur.execute(
            f"INSERT INTO {SCHEMA}.gate_results (gate, status, figures, reason, dag_id, evaluated_at) "
            "SELECT 'gate_' || g, CASE WHEN extract(minute FROM b)::int = 0 THEN 'passed' ELSE 'waiting' END, "
            "jsonb_build_object('minute', extract(minute FROM b)::int), 'seeded', 'migration_phase' || g, b "
            "FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, interval '1 minute') AS b, "
            "generate_series(1, %(gates)s) AS g", {**params, "gates": gates})
        cur.execute(
            f"INSERT INTO {SCHEMA}.audit_ledger (at, actor, action, target) "
            "SELECT b, 'seed', 'tick', 'x' FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz, "
            "interval '1 minute') AS b", params)
        counts = {}
        for table in ("dual_write_stats", "shadow_read_stats", "path_stats", "gate_results", "audit_ledger"):
            cur.execute(f"SELECT count(*) FROM {SCHEMA}.{table}")
            counts[table] = cur.fetchone()[0]
    conn.commit()
    conn.autocommit = True
    with conn.cursor() as cur:
        for table in ("dual_write_stats", "shadow_read_stats", "path_stats", "gate_results", "audit_ledger"):
            cur.execute(f"ANALYZE {SCHEMA}.{table}")
    conn.autocommit = False
    return counts
