"""Phase 6 against real Postgres: archive (idempotent), drop refused early / after writes, drop later."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine import cleanup
from migration_engine.config import TableRef
from tests.airflow_helpers import run_dag
from tests.cutover_fixtures import (
    flags,
    gate_rows,
    ledger,
    prepare_control,
    set_flags,
    wait_for,
    write_config,
)
from tests.hitl_helpers import Answer, run_dag_answering

pytestmark = pytest.mark.timeout(240)

DAG = "migration_phase6_cleanup"
RETENTION_S = 8
OVERRIDES = {"cleanup": {"min_age_after_write_cutover": "1s", "archive_retention": f"{RETENTION_S}s",
                         "quiet_period": "1s"},
             "cutover": {"flag_propagation": "200ms", "quiesce_timeout": "20s"}}


def _exists(databases, name: str) -> bool:
    return databases.query("legacy", "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]


def _comment(databases, name: str) -> str | None:
    return databases.query("legacy", "SELECT obj_description(to_regclass(%s), 'pg_class')", (name,))[0][0]


def test_archive_comment_round_trip():
    at = datetime(2026, 2, 15, 10, 30, tzinfo=UTC)
    text = cleanup.archive_comment(at, at + timedelta(days=90))
    assert text == ("Archived 2026-02-15T10:30:00Z by migration_phase6_cleanup. "
                    "Safe to drop after 2026-05-16T10:30:00Z.")
    assert cleanup.parse_archive_comment(text) == (at, at + timedelta(days=90))
    assert cleanup.parse_archive_comment("some other comment") is None


def test_write_cutover_age_gate(databases, tmp_path, monkeypatch):
    cfg = write_config(tmp_path, monkeypatch, {"cleanup": {"min_age_after_write_cutover": "1h"}})
    prepare_control(databases)
    conn = databases.connect("legacy")
    try:
        result = cleanup.write_cutover_age(conn, cfg, datetime.now(UTC))
        assert result.status == "failed" and "write_to_new is false" in result.reason
        set_flags(databases, write_to_new=True)
        result = cleanup.write_cutover_age(conn, cfg, datetime.now(UTC))
        assert result.status == "waiting" and "cleanup is allowed" in result.reason
        result = cleanup.write_cutover_age(conn, cfg, datetime.now(UTC) + timedelta(hours=1, seconds=1))
        assert result.passed, result.reason
    finally:
        conn.close()


def test_archive_rerun_noop_drop_refused_then_dropped(databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    write_config(tmp_path, monkeypatch, OVERRIDES)
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True, write_to_new=True, keep_old_sync=True, shadow_read_pct=100)
    time.sleep(1.1)  # min_age_after_write_cutover

    # 0. dry run: the exact SQL, nothing changed
    state, tasks = run_dag(DAG, {"action": "archive", "dry_run": True})
    assert state == "success" and tasks["show_plan"] == "success" and tasks["archive_tables"] == "skipped", tasks
    assert _exists(databases, "public.marketplace_listings") and not ledger(databases, "cleanup.archived")

    # 1. archive, after the approval
    run = run_dag_answering(DAG, Answer("approve_archive", "Approve"), conf={"action": "archive"}, timeout=90)
    assert run.state == "success", run.tasks
    assert run.tasks["archive_tables"] == "success" and run.tasks["check_drop_allowed"] == "skipped"
    assert not _exists(databases, "public.marketplace_listings")
    assert _exists(databases, "public.marketplace_listings_archived")
    assert _exists(databases, "public.marketplace_listing_images_archived")
    comment = _comment(databases, "public.marketplace_listings_archived")
    archived_at, safe_at = cleanup.parse_archive_comment(comment)
    assert safe_at - archived_at == timedelta(seconds=RETENTION_S)
    assert flags(databases)["dual_write_enabled"] is False and flags(databases)["keep_old_sync"] is False
    assert flags(databases)["shadow_read_pct"] == 0  # shadow reads read the old tables: off before the rename
    records = ledger(databases, "cleanup.archived")
    assert [r[4] for r in records] == ["public.marketplace_listings_archived",
                                       "public.marketplace_listing_images_archived"]
    assert records[0][5]["safe_drop_at"] == safe_at.isoformat()

    # 2. re-run: a no-op - no approval asked, nothing renamed, no date or ledger entry changed
    before = ledger(databases)
    comments = {t: _comment(databases, t) for t in ("public.marketplace_listings_archived",
                                                    "public.marketplace_listing_images_archived")}
    rerun = run_dag_answering(DAG, Answer("approve_archive", "Reject"), conf={"action": "archive"}, timeout=60)
    assert rerun.state == "success", rerun.tasks
    assert rerun.tasks["plan_archive"] == "success"
    assert rerun.tasks["approve_archive"] == "skipped" and rerun.tasks["archive_tables"] == "skipped"
    assert rerun.unanswered and rerun.unanswered[0].task_id == "approve_archive"  # never asked
    assert ledger(databases) == before
    assert {t: _comment(databases, t) for t in comments} == comments

    # 3. drop before the safe-drop date: refused, with the reason, and nothing dropped
    early = run_dag_answering(DAG, Answer("approve_drop", "Approve"), conf={"action": "drop"}, timeout=60)
    assert early.state == "failed", early.tasks
    assert early.tasks["check_drop_allowed"] == "failed"
    assert early.tasks["drop_archived"] != "success" and early.unanswered  # the approval was never asked
    status, reason, _figures, _at = gate_rows(databases, "drop_archived_tables")[-1]
    assert status == "failed" and "safe to drop only after" in reason
    assert _exists(databases, "public.marketplace_listings_archived")

    # 4. after the retention: approval, then both tables and the legacy column are gone
    wait_for(lambda: datetime.now(UTC) > safe_at + timedelta(seconds=0.5), RETENTION_S + 5, "the safe-drop date")
    done = run_dag_answering(DAG, Answer("approve_drop", "Approve"), conf={"action": "drop"}, timeout=90)
    assert done.state == "success", done.tasks
    assert not _exists(databases, "public.marketplace_listings_archived")
    assert not _exists(databases, "public.marketplace_listing_images_archived")
    cols = databases.query("legacy", "SELECT column_name FROM information_schema.columns "
                                     "WHERE table_name = 'invoices' AND column_name = 'legacy_marketplace_id'")
    assert cols == []
    assert ledger(databases, "cleanup.dropped")


def test_drop_refused_when_archived_table_was_written(databases, tmp_path, monkeypatch):
    cfg = write_config(tmp_path, monkeypatch, OVERRIDES)
    prepare_control(databases)
    conn = databases.connect("legacy")
    try:
        result = cleanup.archive(conn, cfg, actor="test", context={})
        assert result["changed"]
        safe_at = datetime.fromisoformat(result["archived"][0]["safe_drop_at"])
        later = safe_at + timedelta(seconds=1)
        # Without writes: allowed after the safe-drop date, refused before it.
        assert cleanup.drop_readiness(conn, cfg, later).passed
        assert "safe to drop only after" in cleanup.drop_readiness(conn, cfg, safe_at - timedelta(seconds=1)).reason
        # Something still writes the archived table: refused (once Postgres reports the counter).
        databases.query("legacy", "INSERT INTO public.marketplace_listing_images_archived (listing_id, url) "
                                  "SELECT min(id), 'x' FROM public.marketplace_listings_archived")
        refused = wait_for(lambda: (r := cleanup.drop_readiness(conn, cfg, later)).status == "failed" and r,
                           15, "the write counter to move")
        assert "marketplace_listing_images_archived received 1 row write(s) since it was archived" in refused.reason
        # The archive itself stays a no-op
        again = cleanup.archive(conn, cfg, actor="test", context={})
        assert not again["changed"]
        steps = cleanup.plan(conn, cfg, "archive")
        assert all(line.startswith("--") for line in steps), steps
        # Un-archive (the revert) works, e.g. before a late rollback needs the old tables again
        step = cleanup.ArchiveTableStep(cfg, TableRef(schema_name="public", table="marketplace_listing_images"),
                                        datetime.now(UTC))
        from migration_engine.steps import StepRunner

        StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor="test").revert([step])
        assert _exists(databases, "public.marketplace_listing_images")
    finally:
        conn.close()
