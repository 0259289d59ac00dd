"""migration_phase1_schema_prep runs for real against the seeded legacy database.

Covers: a dry run changes nothing on either database (catalog, every table's rows, control schema)
and logs the exact SQL, apply + idempotent re-run, lock-queue safety (lock_timeout + retry while
another transaction holds a lock on tenants), an INVALID index leftover rebuilt, and a failed step
finished by a re-run.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg2
import pytest

from migration_engine.config import load_config
from tests.airflow_helpers import xcom
from tests.phase1_fixtures import (
    PREP,
    apply_phase1,
    assert_phase1_done,
    catalog_snapshot,
    control_schema_exists,
    diff,
    ledger,
    plan_sql,
    run,
    write_config,
)
from tests.snapshots import snapshot, unchanged

# method="thread": a hung dag.test() is not interrupted by the signal method
pytestmark = pytest.mark.timeout(300, method="thread")


def test_dry_run_changes_nothing_on_either_database(databases, airflow_db):
    before = {side: snapshot(dsn) for side, dsn in (("legacy", databases.legacy_dsn), ("new", databases.new_dsn))}
    dr, tasks = run(PREP, {"dry_run": True})
    assert dr.state == "success", tasks
    for side, dsn in (("legacy", databases.legacy_dsn), ("new", databases.new_dsn)):
        assert unchanged(before[side], snapshot(dsn)) == [], side
    assert xcom(dr, "finish") == {"dry_run": True, "steps": 13}


def test_dry_run_then_apply_then_rerun_changes_nothing(databases, airflow_db):
    before = catalog_snapshot(databases)

    dr, tasks = run(PREP, {"dry_run": True})
    assert dr.state == "success", tasks
    assert catalog_snapshot(databases) == before, "a dry run changed the catalog"
    assert not control_schema_exists(databases), "a dry run created the control schema"
    results = [xcom(dr, t) for t in ("step_1_1_add_columns", "step_1_2_indexes", "step_1_3_defaults_constraints")]
    assert all(r["dry_run"] and r["action"] == "apply" for r in results), results
    plan = "\n".join(plan_sql(r) for r in results)
    assert "SELECT set_config('lock_timeout', '2000ms', false)" in plan
    assert ('ALTER TABLE "public"."tenants" ADD COLUMN IF NOT EXISTS "marketplace_payment_mode" '
            'character varying(50);') in plan
    assert ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_invoices_marketplace_transaction" ON "public"."invoices" '
            '("tenant_id", "marketplace_transaction_id", "status")\nWHERE "marketplace_transaction_id" IS NOT NULL;'
            ) in plan
    assert 'SET "marketplace_payment_mode" = \'manual\'' in plan
    assert 'CHECK ("marketplace_payment_mode" IS NOT NULL) NOT VALID;' in plan
    assert 'VALIDATE CONSTRAINT "chk_marketplace_payment_mode";' in plan

    dr, tasks = run(PREP)
    assert dr.state == "success", tasks
    after = catalog_snapshot(databases)
    assert_phase1_done(after)
    assert databases.query("legacy", "SELECT count(*) FROM tenants WHERE marketplace_payment_mode IS NULL") == [(0,)]
    states = dict(databases.query("legacy", "SELECT step_id, status FROM migration_control.step_state"))
    assert len(states) == 13 and set(states.values()) == {"verified"}, states
    applied = len(ledger(databases, "step.apply"))
    assert applied == 13

    dr, tasks = run(PREP)
    assert dr.state == "success", tasks
    assert catalog_snapshot(databases) == after, diff(after, catalog_snapshot(databases))
    assert len(ledger(databases, "step.apply")) == applied, "a re-run after success changed something"
    assert all(not s["changed"] for s in xcom(dr, "step_1_3_defaults_constraints")["steps"])


def test_lock_queue_safety(databases, airflow_db, tmp_path, monkeypatch):
    """A transaction holding a lock on tenants: the DDL gives up after lock_timeout and retries,
    so plain SELECTs never wait behind a queued ACCESS EXCLUSIVE request for longer than that."""
    lock_timeout, margin = 0.2, 0.3
    write_config(tmp_path, monkeypatch, ddl={"lock_timeout": "200ms", "max_lock_retries": 60,
                                             "retry_backoff_base": "100ms", "retry_backoff_max": "400ms"})
    hold_after_seen = 3.0
    stop = threading.Event()
    blocker_log: dict = {}
    latencies: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    lock_waits_too_long: list[str] = []

    blocker = databases.connect("legacy")
    with blocker.cursor() as cur:  # open transaction holding ROW SHARE on tenants (and row locks)
        cur.execute("SELECT id FROM tenants WHERE id = 1 FOR UPDATE")

    def hold():
        try:
            watcher = databases.connect("legacy")
            watcher.autocommit = True
            deadline = time.monotonic() + 120
            with watcher.cursor() as cur:
                while time.monotonic() < deadline and "seen" not in blocker_log:
                    cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND query LIKE 'ALTER TABLE \"public\".\"tenants\"%%'")
                    if cur.fetchone()[0]:
                        blocker_log["seen"] = time.monotonic()
                    time.sleep(0.02)
            time.sleep(hold_after_seen)
            watcher.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            blocker.rollback()
            blocker_log["released"] = time.monotonic()

    def read():
        # The reader's own lock_timeout turns "waited for a lock longer than lock_timeout + margin" into
        # an error counted by the server, independent of how busy the CPUs of this machine are.
        try:
            conn = databases.connect("legacy")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET lock_timeout = %s", (f"{int((lock_timeout + margin) * 1000)}ms",))
                while not stop.is_set():
                    t0 = time.monotonic()
                    try:
                        cur.execute("SELECT count(*) FROM tenants")
                        cur.fetchone()
                    except psycopg2.errors.LockNotAvailable as exc:
                        lock_waits_too_long.append(str(exc))
                    latencies.append((t0, time.monotonic() - t0))
                    time.sleep(0.01)
            conn.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=hold, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    try:
        dr, tasks = run(PREP)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=130)
    assert not errors, errors
    assert dr.state == "success", tasks
    assert "seen" in blocker_log, "the ALTER on tenants never waited for the lock"
    blocked = [lat for t0, lat in latencies if blocker_log["seen"] <= t0 <= blocker_log["released"]]
    assert len(blocked) >= 20, f"only {len(blocked)} SELECTs ran while the lock was held"
    # server side: no SELECT waited for a lock longer than lock_timeout + margin
    assert not lock_waits_too_long, lock_waits_too_long
    # client side, while the blocker held its lock (queueing behind the ALTER would show as >= 3 s;
    # the extra allowance is for CPU contention on a shared test machine, not for lock waits)
    worst = max(blocked)
    assert worst < lock_timeout + margin + 0.7, f"a SELECT on tenants took {worst:.3f}s while the lock was held"
    retries = databases.query(
        "legacy", "SELECT (details->>'lock_retries')::int FROM migration_control.step_state WHERE step_id = %s",
        ("phase1.1_1.add_column.public.tenants.marketplace_payment_mode",))[0][0]
    assert retries >= hold_after_seen / 0.7, f"expected several lock-timeout retries, got {retries}"
    assert_phase1_done(catalog_snapshot(databases))


def test_invalid_index_leftover_is_rebuilt(databases, airflow_db):
    conn = databases.connect("legacy")
    conn.autocommit = True
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.UniqueViolation):
        # an interrupted/failed CREATE INDEX CONCURRENTLY leaves an INVALID index with the wanted name
        cur.execute("CREATE UNIQUE INDEX CONCURRENTLY idx_contacts_marketplace_user_tenant ON contacts (tenant_id)")
    conn.close()
    planted = databases.query("legacy", "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                        "'idx_contacts_marketplace_user_tenant'::regclass")
    assert planted == [(False,)]

    dr, tasks = run(PREP)
    assert dr.state == "success", tasks
    row = databases.query("legacy", "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                                    "WHERE indexrelid = 'idx_contacts_marketplace_user_tenant'::regclass")
    assert row[0][0] is True
    assert "(marketplace_user_id, tenant_id) WHERE (marketplace_user_id IS NOT NULL)" in row[0][1]
    assert "UNIQUE" not in row[0][1]
    rebuilt = databases.query(
        "legacy", "SELECT (details->>'invalid_indexes_rebuilt')::int FROM migration_control.step_state "
                  "WHERE step_id = 'phase1.1_2.index.public.idx_contacts_marketplace_user_tenant'")
    assert rebuilt == [(1,)]


def test_failed_step_then_rerun_finishes(databases, airflow_db):
    """The appendix's idx_invoices_marketplace_transaction (another definition) stops step 1.2 with a
    message; once the operator drops it, re-running the DAG finishes the job."""
    apply_phase1(databases, load_config(), groups=("1.1",))
    databases.query("legacy", "CREATE INDEX idx_invoices_marketplace_transaction ON invoices "
                              "(tenant_id, is_marketplace_invoice, status) WHERE is_marketplace_invoice = TRUE")
    dr, tasks = run(PREP)
    assert dr.state == "failed" and tasks["step_1_2_indexes"] == "failed", tasks
    assert tasks["step_1_1_add_columns"] == "success" and tasks["step_1_3_defaults_constraints"] == "upstream_failed"
    error = databases.query("legacy", "SELECT details->>'error' FROM migration_control.step_state WHERE step_id = "
                                      "'phase1.1_2.index.public.idx_invoices_marketplace_transaction'")[0][0]
    assert "IndexDefinitionMismatch" in error and "config wants ['tenant_id', 'marketplace_transaction_id'" in error

    databases.query("legacy", "DROP INDEX idx_invoices_marketplace_transaction")
    dr, tasks = run(PREP)
    assert dr.state == "success", tasks
    assert_phase1_done(catalog_snapshot(databases))


def test_a_long_transaction_makes_phase1_wait_from_an_empty_control_schema(databases, airflow_db):
    """Issue 13 acceptance: a transaction that read tenants (a report, a pg_dump) stays open for 20 s
    after phase 1 first waits for it. Phase 1 from an empty control schema (every DDL, the
    control-schema upgrade's included, goes through the lock-timeout executor; the ALTERs on tenants
    need the lock the transaction holds) waits - lock_timeout, jittered retry, the blocker named in
    the log - and succeeds with
    the shipped ddl settings; plain SELECTs on tenants meanwhile never wait for a lock longer than
    lock_timeout (their own lock_timeout, enforced by the server, turns a longer wait into a counted
    error; the client-side latency is printed, not asserted)."""
    cfg = load_config()
    lock_timeout = cfg.ddl.lock_timeout.total_seconds()
    assert not control_schema_exists(databases), "the test must start from an empty control schema"
    hold_for = 20.0
    stop = threading.Event()
    latencies: list[tuple[float, float]] = []
    errors: list[BaseException] = []
    lock_waits_too_long: list[str] = []
    waiting_seen: set[str] = set()
    moments: dict[str, float] = {}

    blocker = databases.connect("legacy")
    with blocker.cursor() as cur:  # an open transaction that read tenants: ACCESS SHARE until it ends
        cur.execute("SELECT pg_backend_pid()")
        blocker_pid = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM tenants")

    def hold():  # release 20 s after a phase-1 statement is first seen waiting for the transaction
        try:
            conn = databases.connect("legacy")
            conn.autocommit = True
            deadline = time.monotonic() + 240
            with conn.cursor() as cur:
                while time.monotonic() < deadline and not stop.is_set():
                    cur.execute("SELECT left(query, 60) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND datname = current_database() AND pid <> pg_backend_pid() "
                                "AND application_name NOT LIKE 'test-reader%%'")
                    found = [r[0].split("\n")[0] for r in cur.fetchall()]
                    waiting_seen.update(found)
                    if found and "seen" not in moments:
                        moments["seen"] = time.monotonic()
                    if "seen" in moments and time.monotonic() - moments["seen"] >= hold_for:
                        break
                    time.sleep(0.05)
            conn.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            blocker.rollback()
            moments["released"] = time.monotonic()

    def read():
        try:
            conn = psycopg2.connect(databases.legacy_dsn, application_name="test-reader")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET lock_timeout = %s", (f"{int((lock_timeout + 0.5) * 1000)}ms",))
                while not stop.is_set():
                    t0 = time.monotonic()
                    try:
                        cur.execute("SELECT count(*) FROM tenants")
                        cur.fetchone()
                    except psycopg2.errors.LockNotAvailable as exc:
                        lock_waits_too_long.append(str(exc))
                    latencies.append((t0, time.monotonic() - t0))
                    time.sleep(0.02)
            conn.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    class Lines(logging.Handler):  # on the executor's own logger: task logging may not reach the root
        lines: list[str] = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    ddl_log = logging.getLogger("migration_engine.ddl")
    handler = Lines(level=logging.WARNING)
    ddl_log.addHandler(handler)
    threads = [threading.Thread(target=hold, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    try:
        dr, tasks = run(PREP)
        moments["finished"] = time.monotonic()
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        blocker.close()
        ddl_log.removeHandler(handler)
    assert not errors, errors
    assert dr.state == "success", tasks
    assert set(tasks.values()) == {"success"}, tasks
    assert control_schema_exists(databases)
    assert_phase1_done(catalog_snapshot(databases))
    # it waited: a phase-1 statement queued for the open transaction, which stayed open 20 s after
    # that, and the run could only finish once it ended
    assert "seen" in moments, "no phase-1 statement ever waited for the open transaction"
    assert moments["released"] - moments["seen"] >= hold_for and moments["released"] <= moments["finished"]
    retry_lines = [m for m in Lines.lines if "lock_timeout (2000ms) hit" in m]
    assert len(retry_lines) >= 2, Lines.lines[:5]  # it gave up after lock_timeout and retried, more than once
    # each retry names the blocker: the open transaction's pid and its query
    assert all(f"pid {blocker_pid}" in line and "SELECT count(*) FROM tenants" in line for line in retry_lines), \
        retry_lines[:3]
    held = [lat for t0, lat in latencies if moments["seen"] <= t0 <= moments["released"]]
    assert len(held) >= 50, f"only {len(held)} SELECTs ran while phase 1 waited"
    assert not lock_waits_too_long, lock_waits_too_long
    print(f"reader latency while phase 1 waited: {len(held)} SELECTs, max {max(held):.3f}s "
          f"(lock_timeout {lock_timeout:g}s); {len(retry_lines)} lock-timeout retries logged; waited in the "
          f"lock queue: {sorted(waiting_seen)}")
