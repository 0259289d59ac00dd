"""Phase 6's engine against real Postgres: the archive comment, the write-cutover gate, archive/drop checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from migration_engine import cleanup
from migration_engine.config import TableRef
from tests.cutover_fixtures import ledger, plant_consistency_runs, prepare_control, set_flags, wait_for, write_config

pytestmark = pytest.mark.timeout(240)

RETENTION_S = 8
OVERRIDES = {"cleanup": {"min_age_after_write_cutover": "1s", "archive_retention": f"{RETENTION_S}s",
                         "quiet_period": "1s"},
             "cutover": {"flag_propagation": "200ms", "quiesce_timeout": "20s"}}


def _exists(databases, name: str) -> bool:
    return databases.query("legacy", "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]


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


def test_drop_refused_when_archived_table_was_written(databases, tmp_path, monkeypatch):
    cfg = write_config(tmp_path, monkeypatch, OVERRIDES)
    prepare_control(databases)
    plant_consistency_runs(databases, end=datetime.now(UTC), span="8 days", every="1 hour")
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


def test_archive_plan_is_the_exact_sql_and_a_rerun_records_nothing(databases, tmp_path, monkeypatch):
    from migration_engine.steps import StepRunner

    cfg = write_config(tmp_path, monkeypatch, OVERRIDES)
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True, shadow_read_pct=100)
    conn = databases.connect("legacy")
    try:
        runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor="test")
        planned = runner.plan(cleanup.steps_for("archive")(cfg))
        executed = {p.step_id: p.executed for p in planned}
        assert "UPDATE" in executed["phase6.stop_old_writes.dual_write_enabled"][0]
        assert executed["phase6.stop_old_writes.keep_old_sync"] == []  # already off: nothing to send
        rename = executed["phase6.archive.public.marketplace_listings"]
        assert any("RENAME TO" in s for s in rename) and any("cleanup.archived" in s for s in rename), rename
        assert not ledger(databases, "cleanup.archived") and _exists(databases, "public.marketplace_listings")
        cleanup.archive(conn, cfg, actor="test", context={})
        n = len(ledger(databases))
        assert all(not p.changed for p in runner.plan(cleanup.archive_steps(cfg)))
        assert not cleanup.archive(conn, cfg, actor="test", context={})["changed"] and len(ledger(databases)) == n
    finally:
        conn.close()


def test_drop_refused_before_7_days_of_passing_consistency(databases, tmp_path, monkeypatch):
    """Seed post-migration checklist: "all consistency checks passing for 7 days" before anything is dropped."""
    cfg = write_config(tmp_path, monkeypatch, OVERRIDES)
    prepare_control(databases)
    now = datetime.now(UTC)
    conn = databases.connect("legacy")
    try:
        cleanup.archive(conn, cfg, actor="test", context={})
        later = now + timedelta(seconds=RETENTION_S + 1)  # past the safe-drop date: only consistency decides
        none = cleanup.drop_readiness(conn, cfg, later)
        assert none.status == "failed" and "no passing consistency run" in none.reason

        # Six days of hourly passing runs: a day short.
        plant_consistency_runs(databases, end=now, span="6 days", every="1 hour")
        short = cleanup.drop_readiness(conn, cfg, later)
        assert short.status == "failed" and "passed for 6d 00h" in short.reason and "need 7d 00h" in short.reason
        assert short.figures["consistency"]["runs"] == 6 * 24 + 1

        # Eight days, but one run three days ago failed: the streak restarts there.
        plant_consistency_runs(databases, end=now - timedelta(days=6, minutes=30), span="2 days", every="1 hour")
        assert cleanup.drop_readiness(conn, cfg, later).passed
        plant_consistency_runs(databases, end=now - timedelta(days=3, minutes=10), span="0", every="1 hour",
                               status="failed")
        failed = cleanup.drop_readiness(conn, cfg, later)
        assert failed.status == "failed" and "passed for 3d 00h" in failed.reason and "did not pass" in failed.reason

        # The hourly DAG stopped: no run for the last 5 hours.
        stale = cleanup.drop_readiness(conn, cfg, now + timedelta(hours=5))
        assert "without a consistency run" in stale.reason
    finally:
        conn.close()
