"""Phase 1 DAGs run for real against the seeded legacy database.

Covers: dry run changes nothing, apply + idempotent re-run, lock-queue safety (lock_timeout + retry
while another transaction holds a lock on tenants), an INVALID index leftover rebuilt, and the
approved / rejected rollback.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time

import psycopg2
import psycopg2.sql
import pytest

from migration_engine import phase1
from migration_engine.airflow import approvals
from migration_engine.config import Ddl, TableRef, load_config
from migration_engine.ddl import DdlExecutor, IndexSpec, LockRetriesExhausted
from migration_engine.steps import RevertRefused
from tests.hitl_helpers import Answer, ApprovalNeverRequested, UnexpectedApproval, run_dag_answering
from tests.phase1_fixtures import catalog_snapshot, control_schema_exists, diff, ledger, run, write_config, xcom

# method="thread": a hung dag.test() is not interrupted by the signal method
pytestmark = pytest.mark.timeout(300, method="thread")

PREP = "migration_phase1_schema_prep"
ROLLBACK = "migration_phase1_rollback"
ADDED_COLUMNS = {("tenants", "marketplace_payment_mode"), ("contacts", "marketplace_user_id"),
                 ("contacts", "marketplace_first_transaction_at"), ("contacts", "marketplace_last_transaction_at"),
                 ("contacts", "marketplace_transaction_count"), ("contacts", "marketplace_total_spent_cents"),
                 ("invoices", "is_marketplace_invoice"), ("invoices", "marketplace_transaction_id")}
INDEXES = {"idx_contacts_marketplace_user_tenant", "idx_invoices_marketplace_transaction",
           "idx_invoices_marketplace_flag"}


def _assert_phase1_done(snap):
    cols = {(t, c): (typ, nn, dflt) for t, c, typ, nn, dflt in snap["columns"]}
    assert ADDED_COLUMNS <= set(cols), ADDED_COLUMNS - set(cols)
    assert cols[("tenants", "marketplace_payment_mode")] == ("character varying(50)", True,
                                                              "'manual'::character varying")
    assert cols[("contacts", "marketplace_transaction_count")] == ("integer", False, "0")
    assert cols[("invoices", "is_marketplace_invoice")] == ("boolean", False, "false")
    idx = {name: (d, valid, ready) for name, d, valid, ready in snap["indexes"]}
    assert INDEXES <= set(idx)
    assert all(idx[n][1] and idx[n][2] for n in INDEXES)
    # step 1.2's definition, not the appendix's (documented discrepancy)
    assert "(tenant_id, marketplace_transaction_id, status)" in idx["idx_invoices_marketplace_transaction"][0]
    assert "WHERE (marketplace_transaction_id IS NOT NULL)" in idx["idx_invoices_marketplace_transaction"][0]
    cons = {name: (typ, d, validated) for _t, name, typ, d, validated in snap["constraints"]}
    assert cons["chk_marketplace_payment_mode"][0] == "c" and cons["chk_marketplace_payment_mode"][2] is True
    assert "tenants_marketplace_payment_mode_not_null" not in cons  # the helper check is dropped


def test_dry_run_then_apply_then_rerun_changes_nothing(databases, airflow_db):
    before = catalog_snapshot(databases)

    dr, tasks = run(PREP, {"dry_run": True})
    assert dr.state == "success", tasks
    assert catalog_snapshot(databases) == before, "a dry run changed the catalog"
    assert not control_schema_exists(databases), "a dry run created the control schema"
    plan = "\n".join(xcom(dr, t)["plan"] for t in
                     ("step_1_1_add_columns", "step_1_2_indexes", "step_1_3_defaults_constraints"))
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
    _assert_phase1_done(after)
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
    _assert_phase1_done(catalog_snapshot(databases))


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


def test_rollback_rejected_changes_nothing_approved_restores_catalog(databases, airflow_db, fake_slack):
    before = catalog_snapshot(databases)
    dr, tasks = run(PREP)
    assert dr.state == "success", tasks
    after = catalog_snapshot(databases)
    assert after != before

    dry = run_dag_answering(ROLLBACK, Answer("approve_rollback", "Approve"), conf={"dry_run": True}, timeout=60)
    assert dry.state == "success" and dry.tasks["approve_rollback"] == "skipped", dry.tasks
    assert dry.unanswered and not dry.answered  # a dry run never asks
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_invoices_marketplace_flag";' in \
        xcom(dry.dag_run, "plan_rollback")["plan"]
    assert catalog_snapshot(databases) == after

    rejected = run_dag_answering(ROLLBACK, Answer("approve_rollback", "Reject", responder="alice"), timeout=90)
    assert rejected.state == "success", rejected.tasks
    assert rejected.tasks["approve_rollback"] == "success"
    assert {rejected.tasks[t] for t in ("revert_1_3_defaults_constraints", "revert_1_2_indexes",
                                        "revert_1_1_columns", "validate_rollback")} == {"skipped"}
    assert catalog_snapshot(databases) == after
    requests = [m for m in fake_slack.messages() if "Roll back the phase-1 schema changes?" in json.dumps(m)]
    assert requests, fake_slack.messages()  # the approval request went to Slack (with buttons)
    decisions = [d for d in ledger(databases, "approval.") if d[0] != "approval.answered_in_slack"]
    assert [(a, actor) for a, actor, _t, _d in decisions] == [("approval.requested", "airflow:" + ROLLBACK),
                                                               ("approval.rejected", "alice (alice)")]
    answer = rejected.answered[0]
    with pytest.raises(approvals.AlreadyAnswered, match=r"already answered \['Reject'\] by alice"):
        approvals.respond(ROLLBACK, answer.run_id, "approve_rollback", "Approve", "mallory")
    with pytest.raises(approvals.NoPendingApproval, match="not asked for input"):
        approvals.respond(ROLLBACK, answer.run_id, "plan_rollback", "Approve", "mallory")
    with pytest.raises(approvals.NoPendingApproval, match="no task instance"):
        approvals.respond(ROLLBACK, "no-such-run", "approve_rollback", "Approve", "mallory")

    approved = run_dag_answering(ROLLBACK, Answer("approve_rollback", "Approve",
                                                  responder={"id": "U123", "name": "bob"}), timeout=90)
    assert approved.state == "success", approved.tasks
    assert catalog_snapshot(databases) == before, diff(before, catalog_snapshot(databases))
    actions = [a for a, *_ in ledger(databases)]
    assert actions.count("approval.approved") == 1 and "phase1.rolled_back" in actions
    assert actions.count("step.revert") == 13

    # after a rollback phase 1 can be applied again (the "before" state is captured afresh)
    cfg = load_config()
    for group in phase1.GROUPS:
        phase1.apply_group(cfg, group, dry_run=False, actor="test")
        phase1.verify_group(cfg, group, actor="test")
    assert catalog_snapshot(databases) == after


def test_rollback_refuses_to_drop_application_data(databases, airflow_db):
    cfg = load_config()
    with pytest.raises(RevertRefused, match="nothing recorded to roll back"):
        phase1.rollback_plan(cfg, allow_data_loss=False)
    phase1.prepare(cfg, dry_run=False)
    for group in phase1.GROUPS:
        phase1.apply_group(cfg, group, dry_run=False, actor="test")
    databases.query("legacy", "UPDATE contacts SET marketplace_user_id = 7 WHERE id <= 3")
    databases.query("legacy", "UPDATE tenants SET marketplace_payment_mode = 'stripe' WHERE id = 1")
    with pytest.raises(RevertRefused, match=r"contacts.marketplace_user_id \(3 rows\).*"
                                            r"tenants.marketplace_payment_mode \(1 rows\)|"
                                            r"tenants.marketplace_payment_mode \(1 rows\).*"
                                            r"contacts.marketplace_user_id \(3 rows\)"):
        phase1.rollback_plan(cfg, allow_data_loss=False)
    plan = phase1.rollback_plan(cfg, allow_data_loss=True)
    assert plan["data_at_risk"] == {"public.contacts.marketplace_user_id": 3,
                                    "public.tenants.marketplace_payment_mode": 1}
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_contacts_marketplace_user_tenant";' in plan["plan"]


def test_hitl_helper_is_time_bounded(databases, airflow_db):
    """An approval nobody answers must not hang the test session: the helper fails it and says so."""
    cfg = load_config()
    phase1.prepare(cfg, dry_run=False)
    phase1.apply_group(cfg, "1.1", dry_run=False, actor="test")
    started = time.monotonic()
    with pytest.raises(UnexpectedApproval, match="approve_rollback asked .* no answer for it"):
        run_dag_answering(ROLLBACK, Answer("approve_typo", "Approve"), timeout=60)
    with pytest.raises(ApprovalNeverRequested, match=r"no answerable approval for \['approve_rollback'\]"):
        run_dag_answering(ROLLBACK, Answer("approve_rollback", "Approve", delay=600), timeout=3)
    assert time.monotonic() - started < 120
    assert approvals.pending_approvals(ROLLBACK) == []
    assert databases.query("legacy", "SELECT count(*) FROM migration_control.audit_ledger "
                                     "WHERE action LIKE 'step.revert%%'") == [(0,)]


def test_failed_step_then_rerun_finishes(databases, airflow_db):
    """The appendix's idx_invoices_marketplace_transaction (another definition) stops step 1.2 with a
    message; once the operator drops it, re-running the DAG finishes the job."""
    cfg = load_config()
    phase1.prepare(cfg, dry_run=False)
    phase1.apply_group(cfg, "1.1", dry_run=False, actor="test")
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
    _assert_phase1_done(catalog_snapshot(databases))


# --- the DDL executor on its own ------------------------------------------------------------
def _ddl(**overrides) -> Ddl:
    return Ddl.model_validate({"lock_timeout": "300ms", "max_lock_retries": 20, "retry_backoff_base": "50ms",
                               "retry_backoff_max": "200ms", **overrides})


def test_backoff_is_jittered_exponential_and_capped(databases):
    conn = databases.connect("legacy")
    ex = DdlExecutor(conn, _ddl(retry_backoff_base="100ms", retry_backoff_max="1s"), rng=random.Random(7))
    for attempt, cap in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)):
        delays = [ex.backoff(attempt) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > cap / 4  # jittered, not a fixed delay
    conn.close()


def test_exhausted_retries_name_the_blocker(databases):
    blocker = databases.connect("legacy")
    with blocker.cursor() as cur:
        cur.execute("SELECT id FROM tenants WHERE id = 1 FOR UPDATE")
    conn = databases.connect("legacy")
    ex = DdlExecutor(conn, _ddl(max_lock_retries=2))
    table = TableRef.model_validate("public.tenants")
    with pytest.raises(LockRetriesExhausted, match=r"gave up after 3 attempts.*RowShareLock idle in transaction"):
        ex.execute("ddl/add_column.sql", {"schema": "public", "table": "tenants", "column": "x_probe",
                                          "column_type": psycopg2.sql.SQL("integer")}, table=table)
    assert ex.lock_retries == 2
    blocker.rollback()
    assert ex.column_state(table, "x_probe") is None
    blocker.close()
    conn.close()


def test_concurrent_index_build_waits_for_a_writer_politely_and_logs_progress(databases, caplog):
    """CREATE INDEX CONCURRENTLY waits for open writers; with lock_timeout it gives up, leaves an INVALID
    index, and the retry drops and rebuilds it; progress is polled from a second connection."""
    writer = databases.connect("legacy")
    with writer.cursor() as cur:  # an open write transaction on contacts
        cur.execute("UPDATE contacts SET name = name WHERE id = 1")
    release = threading.Timer(1.5, writer.commit)
    release.start()
    conn = databases.connect("legacy")
    ex = DdlExecutor(conn, _ddl(), connect=lambda: databases.connect("legacy"), progress_interval=0.05)
    spec = IndexSpec(schema="public", table="contacts", name="idx_probe_progress", columns=("tenant_id", "name"))
    with caplog.at_level(logging.INFO, logger="migration_engine.ddl"):
        outcome = ex.ensure_index(spec)
    release.join()
    assert outcome == "rebuilt"  # the first attempt timed out waiting for the writer and left it INVALID
    assert ex.lock_retries >= 1 and ex.invalid_indexes_rebuilt >= 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("building index idx_probe_progress: phase=waiting for writers before build" in m for m in messages), \
        messages
    state = ex.index_state("public", "idx_probe_progress")
    assert state["indisvalid"] and state["columns"] == ["tenant_id", "name"]
    writer.close()
    conn.close()
