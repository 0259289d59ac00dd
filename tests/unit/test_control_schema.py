"""Versioned control-schema migrations against a real Postgres: fresh install, adoption of the old
unversioned layout, refusals (edited migration, newer database, outdated schema), dry-run plan,
lock-timeout waits through the DDL executor, concurrent upgrades."""

from __future__ import annotations

import logging
import re
import shutil
import threading
from pathlib import Path

import psycopg2
import pytest

from migration_engine import control, control_schema
from migration_engine.config import Ddl
from migration_engine.consistency import store as consistency_store
from migration_engine.ddl import LockRetriesExhausted
from migration_engine.sqlfiles import SQL_DIR_ENV, split_statements, sql_dir

SCHEMA = "migration_control"
V0 = Path(__file__).resolve().parents[1] / "fixtures" / "control_schema_v0"
NAMES = ["001_control_tables.sql", "002_control_indexes.sql", "003_backfill_tables.sql",
         "004_consistency_tables.sql", "005_slack_tables.sql", "006_backfill_generic_keys.sql",
         "007_finding_key_types.sql", "008_perf_samples.sql", "009_metric_alerts.sql",
         "010_backfill_controller.sql"]
LATEST = len(NAMES)
TABLES = {"feature_flags", "dual_write_stats", "shadow_read_stats", "shadow_read_mismatches", "path_stats",
          "gate_results", "audit_ledger", "alerts", "step_state", "backfill_runs", "backfill_ranges",
          "consistency_runs", "consistency_check_results", "consistency_findings", "slack_requests",
          "slack_approvals"}  # the tables the unversioned layout had (tests/fixtures/control_schema_v0)
NEW_TABLES = {"perf_samples", "perf_table_samples", "perf_statement_counters", "operation_stats",
              "backfill_controller"}  # 008, 009, 010


def _fast(**overrides) -> Ddl:
    return Ddl.model_validate({"lock_timeout": "300ms", "max_lock_retries": 30, "retry_backoff_base": "50ms",
                               "retry_backoff_max": "200ms", **overrides})


def _versions(databases) -> list[tuple]:
    return databases.query("legacy", f"SELECT version, name FROM {SCHEMA}.schema_version ORDER BY version")


def _tables(databases) -> set[str]:
    return {r[0] for r in databases.query("legacy", "SELECT table_name FROM information_schema.tables "
                                                    "WHERE table_schema = %s", (SCHEMA,))}


# Migration 006 turns the backfill's key bounds from bigint into text (and adds backfill_runs.key_type):
# their rows are compared with the bounds as text on both sides, so a changed value still shows.
# 006: backfill_runs.key_type, 007: consistency_findings.key_type, 009: path_stats.latency_histogram and
# alerts.conditions
ADDED = "'{key_type,latency_histogram,conditions}'::text []"
_BOUNDS = {"backfill_runs": ("key_min", "key_max"), "backfill_ranges": ("key_lo", "key_hi", "last_key")}


def _contents(databases) -> dict[str, list[str]]:
    """Every row of every control table (except schema_version), as text, in a stable order; without
    the nullable columns later migrations add to existing tables (ADDED: NULL in every old row)."""
    def select(t: str) -> str:
        if t not in _BOUNDS:
            return f'SELECT (to_jsonb(x) - {ADDED})::text FROM {SCHEMA}."{t}" AS x ORDER BY 1'
        bounds = ", ".join(f"'{c}', x.{c}::text" for c in _BOUNDS[t])
        return (f"SELECT (to_jsonb(x) - {ADDED} || jsonb_build_object({bounds}))::text "
                f'FROM {SCHEMA}."{t}" AS x ORDER BY 1')
    return {t: [r[0] for r in databases.query("legacy", select(t))]
            for t in sorted(_tables(databases) - {"schema_version"})}


def _create_v0_layout(conn) -> None:
    """The control schema exactly as the unversioned code made it (frozen copy of its SQL)."""
    conn.autocommit = True
    with conn.cursor() as cur:
        for path in sorted(V0.glob("*.sql")):
            for stmt in split_statements(path.read_text().replace('"{schema}"', f'"{SCHEMA}"')):
                cur.execute(stmt)
    conn.autocommit = False


def _fill_v0(databases, conn) -> None:
    """At least one row in every control table, through the product's writers where they exist."""
    control.set_flag(conn, SCHEMA, "dual_write_enabled", True, actor="alice", reason="phase 2")
    control.record_gate_result(conn, SCHEMA, gate="dual_write", status="passed", figures={"n": 1}, reason="ok")
    databases.query("legacy", f"""
        INSERT INTO {SCHEMA}.dual_write_stats (entity, bucket, attempts, failures) VALUES ('listings', now(), 5, 1);
        INSERT INTO {SCHEMA}.shadow_read_stats (entity, bucket, reads_compared, mismatches)
            VALUES ('listings', now(), 9, 2);
        INSERT INTO {SCHEMA}.shadow_read_mismatches (entity, entity_key, diffs) VALUES ('listings', '7', '{{}}');
        INSERT INTO {SCHEMA}.path_stats (entity, bucket, operation, path, requests, errors)
            VALUES ('listings', now(), 'read', 'new', 10, 0);
        INSERT INTO {SCHEMA}.alerts (dedup_key, severity, status) VALUES ('k1', 'warning', 'open');
        INSERT INTO {SCHEMA}.step_state (step_id, phase, status) VALUES ('phase1.x', 'phase1', 'applied');
        INSERT INTO {SCHEMA}.backfill_runs (entity, key_column, parallelism) VALUES ('listings', 'id', 2);
        INSERT INTO {SCHEMA}.backfill_ranges (run_id, range_no, key_lo, key_hi, last_key)
            SELECT id, 1, 0, 100, 40 FROM {SCHEMA}.backfill_runs;
        INSERT INTO {SCHEMA}.consistency_runs (kind, status) VALUES ('full', 'passed');
        INSERT INTO {SCHEMA}.consistency_check_results (run_pk, check_name, check_kind, status)
            SELECT id, 'listings', 'entity', 'passed' FROM {SCHEMA}.consistency_runs;
        INSERT INTO {SCHEMA}.consistency_findings (run_pk, check_name, kind, entity_key)
            SELECT id, 'listings', 'changed', '42' FROM {SCHEMA}.consistency_runs;
        INSERT INTO {SCHEMA}.slack_requests (request_ts, signature) VALUES (1700000000, 'v0=abc');
        INSERT INTO {SCHEMA}.slack_approvals (dag_id, run_id, task_id, ti_id, gate)
            VALUES ('d', 'r', 't', 'ti', 'cutover');
    """)


def test_migration_files_are_numbered_and_cover_every_control_table():
    found = control_schema.migrations()
    assert [m.name for m in found] == NAMES and [m.version for m in found] == list(range(1, LATEST + 1))
    assert [m.transactional for m in found] == [True, False] + [True] * (LATEST - 2)  # 002 builds CONCURRENTLY
    tables = {n for k, n in control_schema.expected_objects() if k == "table"}
    assert tables == TABLES | NEW_TABLES | {"schema_version"}
    assert {("trigger", "audit_ledger_append_only"), ("trigger", "audit_ledger_no_truncate"),
            ("index", "gate_results_gate_time"), ("index", "consistency_findings_run"),
            ("function", "backfill_unmapped"),
            ("index", "perf_samples_time")} <= control_schema.expected_objects()


def test_fresh_install_records_every_migration_and_a_second_upgrade_does_nothing(databases):
    conn = databases.connect("legacy")
    assert control_schema.current_version(conn, SCHEMA) == 0
    applied = control_schema.upgrade(conn, SCHEMA, applied_by="test")
    assert [m.name for m in applied] == NAMES
    rows = databases.query("legacy", f"SELECT version, name, checksum, applied_by FROM {SCHEMA}.schema_version "
                                     "ORDER BY version")
    assert [(v, n, by) for v, n, _c, by in rows] == [(i + 1, n, "test") for i, n in enumerate(NAMES)]
    assert [c for _v, _n, c, _by in rows] == [m.checksum for m in control_schema.migrations()]
    assert TABLES | NEW_TABLES <= _tables(databases)
    assert control_schema.verify(conn, SCHEMA) == []
    assert control_schema.current_version(conn, SCHEMA) == LATEST
    with conn.cursor() as cur:  # the caller's connection is given back as it was
        cur.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        assert cur.fetchone() == ("0", "0")
    assert conn.autocommit is False
    conn.rollback()

    assert control_schema.upgrade(conn, SCHEMA) == []
    assert control_schema.plan(conn, SCHEMA) == []
    assert len(_versions(databases)) == LATEST
    assert control_schema.require_current(conn, SCHEMA).version == LATEST
    conn.close()


def test_the_unversioned_layout_is_adopted_in_place_losing_no_rows(databases, caplog):
    conn = databases.connect("legacy")
    _create_v0_layout(conn)
    _fill_v0(databases, conn)
    before = _contents(databases)
    assert set(before) == TABLES and all(before.values()), {t: len(r) for t, r in before.items()}
    assert control_schema.current_version(conn, SCHEMA) == 0
    with pytest.raises(control_schema.ControlSchemaOutdated,
                       match=rf"is at version 0 \(created before versioned migrations\), code needs {LATEST}: "
                             r"run migration_setup"):
        control_schema.require_current(conn, SCHEMA)

    with caplog.at_level(logging.INFO, logger="migration_engine.control_schema"):
        applied = control_schema.upgrade(conn, SCHEMA)
    assert [m.name for m in applied] == NAMES
    assert "adopting it in place" in caplog.text
    before = {**before, **{t: [] for t in NEW_TABLES}}  # later migrations only add (empty) tables
    assert _contents(databases) == before
    assert [n for _v, n in _versions(databases)] == NAMES
    assert control_schema.verify(conn, SCHEMA) == []
    assert control_schema.upgrade(conn, SCHEMA) == []
    assert _contents(databases) == before

    # the contract's guarantees survive: append-only ledger, CHECK-constrained flags
    with conn.cursor() as cur, pytest.raises(psycopg2.Error, match="append-only"):
        cur.execute(f"DELETE FROM {SCHEMA}.audit_ledger")
    conn.rollback()
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.CheckViolation):
        cur.execute(f"UPDATE {SCHEMA}.feature_flags SET value = '250' WHERE name = 'read_new_pct'")
    conn.rollback()
    assert control.get_flags(conn, SCHEMA)["dual_write_enabled"] is True
    conn.close()


def test_an_edited_shipped_migration_is_refused(databases, tmp_path, monkeypatch):
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA)
    edited = tmp_path / "sql"
    shutil.copytree(sql_dir(), edited)
    target = edited / control_schema.MIGRATIONS_DIR / "002_control_indexes.sql"
    target.write_text(target.read_text() + "-- a harmless-looking edit\n")
    monkeypatch.setenv(SQL_DIR_ENV, str(edited))
    for call in (control_schema.upgrade, control_schema.plan, control_schema.require_current):
        with pytest.raises(control_schema.MigrationEdited,
                           match=r"2: applied as 002_control_indexes.sql .* never edited.*new numbered file"):
            call(conn, SCHEMA)
    conn.close()


def test_a_database_newer_than_the_code_is_refused(databases):
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA)
    databases.query("legacy", f"INSERT INTO {SCHEMA}.schema_version (version, name, checksum, applied_by) "
                              "VALUES (%s, %s, 'x', 'newer code')",
                    (LATEST + 1, f"{LATEST + 1:03d}_from_the_future.sql"))
    for call in (control_schema.upgrade, control_schema.require_current):
        with pytest.raises(control_schema.ControlSchemaTooNew,
                           match=rf"at version {LATEST + 1}, newer than this code knows \(latest {LATEST}\)"
                                 r".*_from_the_future"):
            call(conn, SCHEMA)
    conn.close()


def test_users_of_the_tables_refuse_an_outdated_or_missing_schema(databases):
    conn = databases.connect("legacy")
    with pytest.raises(control_schema.ControlSchemaMissing, match='"nowhere" does not exist.*migration_setup'):
        consistency_store.start_run(conn, "nowhere", kind="full", dag_id=None, run_id=None)
    control_schema.upgrade(conn, SCHEMA, target=3)
    with pytest.raises(control_schema.ControlSchemaOutdated,
                       match=rf"is at version 3, code needs {LATEST}: run migration_setup \(pending: "
                             + re.escape(", ".join(NAMES[3:])) + r"\)"):
        consistency_store.start_run(conn, SCHEMA, kind="full", dag_id=None, run_id=None)
    assert "consistency_runs" not in _tables(databases)  # refused, not lazily created
    control_schema.upgrade(conn, SCHEMA)
    assert consistency_store.start_run(conn, SCHEMA, kind="full", dag_id=None, run_id=None) >= 1
    conn.close()


def test_plan_is_the_sql_upgrade_would_send_and_changes_nothing(databases):
    conn = databases.connect("legacy")
    text = "\n".join(control_schema.plan(conn, SCHEMA, _fast()))
    assert "set_config('lock_timeout', '300ms', false)" in text
    assert 'CREATE TABLE IF NOT EXISTS "migration_control".feature_flags' in text
    assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS gate_results_gate_time ON "migration_control".gate_results' \
        in text
    assert "INSERT INTO \"migration_control\".schema_version" in text and f"'{NAMES[-1]}'" in text
    assert databases.query("legacy", "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (SCHEMA,)) == [(0,)]

    control_schema.upgrade(conn, SCHEMA, target=2)
    later = control_schema.plan(conn, SCHEMA)
    assert "003_backfill_tables.sql" in "\n".join(later) and "001_control_tables.sql" not in "\n".join(later)
    assert not any("CONCURRENTLY" in s for s in later)
    conn.close()


def _hold(databases, statements: list[str], seconds: float, **session) -> tuple[object, threading.Timer]:
    """Another session runs ``statements`` in an open transaction and ends it after ``seconds``."""
    blocker = databases.connect("legacy")
    if session:
        blocker.set_session(**session)
    with blocker.cursor() as cur:
        for s in statements:
            cur.execute(s)
    timer = threading.Timer(seconds, blocker.rollback)
    timer.start()
    return blocker, timer


def test_upgrade_waits_for_a_lock_holder_logs_it_and_succeeds(databases, caplog):
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA, target=1)
    blocker, timer = _hold(databases, [f"LOCK TABLE {SCHEMA}.gate_results IN ACCESS EXCLUSIVE MODE"], 2.0)
    with caplog.at_level(logging.WARNING, logger="migration_engine.ddl"):
        applied = control_schema.upgrade(conn, SCHEMA, _fast())
    timer.join()
    assert [m.name for m in applied] == NAMES[1:]
    retries = [r.getMessage() for r in caplog.records if "lock_timeout (300ms) hit" in r.getMessage()]
    assert retries, caplog.text
    assert "control-schema migration 002_control_indexes.sql" in retries[0]
    assert "schema migration_control" in retries[0] and "AccessExclusiveLock" in retries[0]
    assert control_schema.verify(conn, SCHEMA) == []
    blocker.close()
    conn.close()


def test_exhausted_lock_retries_fail_naming_the_blocker_and_a_rerun_finishes(databases):
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA, target=1)
    blocker, timer = _hold(databases, [f"LOCK TABLE {SCHEMA}.gate_results IN ACCESS EXCLUSIVE MODE"], 60)
    with pytest.raises(LockRetriesExhausted,
                       match=r"002_control_indexes.sql on migration_control: gave up after 3 attempts.*"
                             r"Lock holders on schema migration_control: pid \d+ AccessExclusiveLock "
                             r"idle in transaction"):
        control_schema.upgrade(conn, SCHEMA, _fast(max_lock_retries=2))
    assert [n for _v, n in _versions(databases)] == NAMES[:1]
    timer.cancel()
    blocker.rollback()
    assert [m.name for m in control_schema.upgrade(conn, SCHEMA, _fast())] == NAMES[1:]
    assert control_schema.verify(conn, SCHEMA) == []
    blocker.close()
    conn.close()


def test_a_concurrent_index_build_waits_for_an_old_transaction_and_rebuilds_its_leftover(databases, caplog):
    """CREATE INDEX CONCURRENTLY waits for every older snapshot (a long report on the legacy database):
    lock_timeout stops it, leaving an INVALID index, which the retry drops before building again."""
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA, target=1)
    blocker, timer = _hold(databases, ["SELECT count(*) FROM public.tenants"], 2.0,
                           isolation_level="REPEATABLE READ")
    with caplog.at_level(logging.WARNING, logger="migration_engine.ddl"):
        control_schema.upgrade(conn, SCHEMA, _fast())
    timer.join()
    text = caplog.text
    assert "open transactions it may wait for" in text and "SELECT count(*) FROM public.tenants" in text
    assert "is INVALID (leftover of an interrupted build); dropping it concurrently" in text
    assert [n for _v, n in _versions(databases)] == NAMES
    assert control_schema.verify(conn, SCHEMA) == []
    blocker.close()
    conn.close()


def test_concurrent_upgrades_of_a_new_database_apply_each_migration_once(databases):
    results, errors = [], []

    def go():
        try:
            c = databases.connect("legacy")
            results.append(control_schema.upgrade(c, SCHEMA))
            c.close()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert sorted(m.name for r in results for m in r) == NAMES  # each applied by exactly one caller
    assert [n for _v, n in _versions(databases)] == NAMES
    conn = databases.connect("legacy")
    assert control_schema.verify(conn, SCHEMA) == []
    conn.close()


def test_migration_007_keeps_every_finding_and_the_repair_reads_the_old_rows_as_integer_keys(databases):
    """Findings stored before 007 (integer keys, no key_type) survive the upgrade unchanged and are
    read back by the repair as the integers they were; new findings carry their key's type."""
    from migration_engine import repair

    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA, target=6)
    databases.query("legacy", f"""
        INSERT INTO {SCHEMA}.consistency_runs (kind, status) VALUES ('diff', 'failed');
        INSERT INTO {SCHEMA}.consistency_check_results (run_pk, check_name, check_kind, status, counts)
        VALUES (1, 'listings', 'entity', 'failed', '{{"changed": 2}}');
        INSERT INTO {SCHEMA}.consistency_findings (run_pk, check_name, kind, entity_key, columns)
        VALUES (1, 'listings', 'changed', '42', '{{title}}'), (1, 'listings', 'changed', '9000000001', '{{}}')
    """)
    before = _contents(databases)
    assert [m.name for m in control_schema.upgrade(conn, SCHEMA, target=7)] == ["007_finding_key_types.sql"]
    after = _contents(databases)
    assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}
    rows = databases.query("legacy", f"SELECT entity_key, key_type FROM {SCHEMA}.consistency_findings ORDER BY id")
    assert rows == [("42", None), ("9000000001", None)]
    targets = repair.load_targets(conn, SCHEMA, 1)
    assert targets["listings"].all_keys == ["42", "9000000001"] and targets["listings"].key_types == {"int8"}
    control_schema.upgrade(conn, SCHEMA)  # and the rest
    assert control_schema.verify(conn, SCHEMA) == []
    conn.close()


def test_010_adds_the_pass_controller_and_keeps_the_backfill_rows(databases):
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA, target=9)
    (run_id,) = databases.query("legacy", f"INSERT INTO {SCHEMA}.backfill_runs (entity, key_column, key_min, "
                                          "key_max, rows_total, parallelism) VALUES ('listings', 'id', '1', "
                                          "'100', 100, 2) RETURNING id")[0]
    databases.query("legacy", f"INSERT INTO {SCHEMA}.backfill_ranges (run_id, range_no, key_lo, key_hi, "
                              "last_key, status, rows_read) VALUES (%s, 0, '0', '50', '20', 'running', 20), "
                              "(%s, 1, '50', '100', '50', 'pending', 0)", (run_id, run_id))
    before = _contents(databases)
    assert "backfill_controller" not in _tables(databases)
    applied = control_schema.upgrade(conn, SCHEMA)
    assert [m.name for m in applied] == ["010_backfill_controller.sql"]
    after = _contents(databases)
    assert after.pop("backfill_controller") == [] and after == before  # existing rows kept as they were
    assert control_schema.verify(conn, SCHEMA) == []
    databases.query("legacy", f"INSERT INTO {SCHEMA}.backfill_controller (run_id, baseline_by) VALUES (%s, 0)",
                    (run_id,))
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.ForeignKeyViolation):
        cur.execute(f"INSERT INTO {SCHEMA}.backfill_controller (run_id, baseline_by) VALUES (%s, 0)",
                    (run_id + 1000,))
    conn.rollback()
    conn.close()
