"""migration_phase1_rollback runs for real: plan, approval, revert, validation.

Covers: a dry run after a real phase-1 apply changes nothing on either database and never asks;
Reject changes nothing; Approve restores the catalog to its state before phase 1 (and phase 1 can
be applied again); the approval helper is time-bounded.
"""

from __future__ import annotations

import json
import time

import pytest

from migration_engine.airflow import approvals
from migration_engine.config import load_config
from tests.airflow_helpers import xcom
from tests.hitl_helpers import Answer, ApprovalNeverRequested, UnexpectedApproval, run_dag_answering
from tests.phase1_fixtures import PREP, ROLLBACK, apply_phase1, catalog_snapshot, diff, ledger, run
from tests.snapshots import snapshot, unchanged

# method="thread": a hung dag.test() is not interrupted by the signal method
pytestmark = pytest.mark.timeout(300, method="thread")


def test_dry_run_after_apply_changes_nothing_and_logs_the_plan(databases, airflow_db, fake_slack):
    apply_phase1(databases, load_config())
    before = {side: snapshot(dsn) for side, dsn in (("legacy", databases.legacy_dsn), ("new", databases.new_dsn))}
    dry = run_dag_answering(ROLLBACK, Answer("approve_rollback", "Approve"), conf={"dry_run": True}, timeout=60)
    assert dry.state == "success" and dry.tasks["approve_rollback"] == "skipped", dry.tasks
    assert {dry.tasks[t] for t in ("revert_1_3_defaults_constraints", "revert_1_2_indexes", "revert_1_1_columns",
                                   "validate_rollback")} == {"skipped"}, dry.tasks
    assert dry.unanswered and not dry.answered  # a dry run never asks
    for side, dsn in (("legacy", databases.legacy_dsn), ("new", databases.new_dsn)):
        assert unchanged(before[side], snapshot(dsn)) == [], side
    plan = xcom(dry.dag_run, "plan_rollback")["plan"]
    assert 'ALTER TABLE "public"."tenants" DROP COLUMN IF EXISTS "marketplace_payment_mode";' in plan, plan
    assert plan.index("revert Step 1.3") < plan.index("revert Step 1.2") < plan.index("revert Step 1.1")
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_invoices_marketplace_flag";' in plan
    assert not [m for m in fake_slack.messages() if "Roll back the phase-1 schema changes?" in json.dumps(m)]


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
    apply_phase1(databases, load_config())
    assert catalog_snapshot(databases) == after


def test_hitl_helper_is_time_bounded(databases, airflow_db):
    """An approval nobody answers must not hang the test session: the helper fails it and says so."""
    apply_phase1(databases, load_config(), groups=("1.1",))
    started = time.monotonic()
    with pytest.raises(UnexpectedApproval, match="approve_rollback asked .* no answer for it"):
        run_dag_answering(ROLLBACK, Answer("approve_typo", "Approve"), timeout=60)
    with pytest.raises(ApprovalNeverRequested, match=r"no answerable approval for \['approve_rollback'\]"):
        run_dag_answering(ROLLBACK, Answer("approve_rollback", "Approve", delay=600), timeout=3)
    assert time.monotonic() - started < 120
    assert approvals.pending_approvals(ROLLBACK) == []
    assert databases.query("legacy", "SELECT count(*) FROM migration_control.audit_ledger "
                                     "WHERE action LIKE 'step.revert%%'") == [(0,)]
