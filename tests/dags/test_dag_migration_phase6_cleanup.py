"""The phase-6 DAG against real Postgres: archive (idempotent), drop refused early, drop later; dry runs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine import cleanup
from tests.airflow_helpers import run_dag, xcom
from tests.cutover_fixtures import (
    flags,
    gate_rows,
    ledger,
    plant_consistency_runs,
    prepare_control,
    set_flags,
    wait_for,
    write_config,
)
from tests.hitl_helpers import Answer, run_dag_answering
from tests.snapshots import snapshot, unchanged

pytestmark = pytest.mark.timeout(240)

DAG = "migration_phase6_cleanup"
RETENTION_S = 30  # long enough for steps 2-3 to run before the safe-drop date on a loaded machine
OVERRIDES = {"cleanup": {"min_age_after_write_cutover": "1s", "archive_retention": f"{RETENTION_S}s",
                         "quiet_period": "1s"},
             "cutover": {"flag_propagation": "200ms", "quiesce_timeout": "20s"}}


def _exists(databases, name: str) -> bool:
    return databases.query("legacy", "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]


def _comment(databases, name: str) -> str | None:
    return databases.query("legacy", "SELECT obj_description(to_regclass(%s), 'pg_class')", (name,))[0][0]


def test_archive_rerun_noop_drop_refused_then_dropped(databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    write_config(tmp_path, monkeypatch, OVERRIDES)
    prepare_control(databases)
    plant_consistency_runs(databases, end=datetime.now(UTC), span="8 days", every="1 hour")  # a week of passing checks
    set_flags(databases, dual_write_enabled=True, write_to_new=True, keep_old_sync=True, shadow_read_pct=100)
    time.sleep(1.1)  # min_age_after_write_cutover

    # 0. dry run: the exact SQL, nothing changed
    before = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    state, tasks = run_dag(DAG, {"action": "archive", "dry_run": True})
    assert state == "success" and tasks["show_plan"] == "success" and tasks["archive_tables"] == "skipped", tasks
    assert _exists(databases, "public.marketplace_listings") and not ledger(databases, "cleanup.archived")
    after = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    assert unchanged(before[0], after[0]) == [] and unchanged(before[1], after[1]) == []

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
    # the task reports each archive with the dates its comment states (what an operator or driver reads)
    reported = {s["details"]["archived"]: s["details"] for s in xcom(run.dag_run, "archive_tables")["steps"]}
    assert reported["public.marketplace_listings_archived"]["safe_drop_at"] == safe_at.isoformat()
    assert set(reported) == {"public.marketplace_listings_archived", "public.marketplace_listing_images_archived"}

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

    # 2b. dry run of the drop: nothing changed either
    before = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    state, tasks = run_dag(DAG, {"action": "drop", "dry_run": True})
    assert state == "success" and tasks["show_plan"] == "success" and tasks["drop_archived"] == "skipped", tasks
    after = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    assert unchanged(before[0], after[0]) == [] and unchanged(before[1], after[1]) == []
    assert _exists(databases, "public.marketplace_listings_archived")

    # 3. drop before the safe-drop date: refused, with the reason, and nothing dropped
    assert datetime.now(UTC) < safe_at - timedelta(seconds=5), "too slow for RETENTION_S: raise it"
    early = run_dag_answering(DAG, Answer("approve_drop", "Approve"), conf={"action": "drop"}, timeout=60)
    assert datetime.now(UTC) < safe_at, "the early drop ran past the safe-drop date: raise RETENTION_S"
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
