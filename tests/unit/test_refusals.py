"""Refusals are recorded in the audit ledger by the layer (``airflow/tasks.outcome``): a task that
refuses through ``on_legacy`` / ``run_steps`` leaves one ``refused`` entry with its reason, so the
dashboard's "why did this run fail" finds it even when Slack is down (the failure alert never got
through). Real task under ``dag.test()``, real Postgres, fake Slack that refuses every call."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migration_engine.dashboard import phases, queries

pytestmark = pytest.mark.timeout(300)

SCHEMA = "migration_control"
REASON = "writes already moved to the new database: run migration_rollback_writes first"


@pytest.fixture
def probe(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    folder = Path(__file__).resolve().parents[1] / "dags_for_tests"
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "refusal-test-dags", "classpath": local, "kwargs": {"path": str(folder)}},
    ]))
    bag = DagBag(dag_folder=str(folder / "refusal_probe.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags["refusal_probe"]


def _refusals(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT actor, target, reason, details FROM {SCHEMA}.audit_ledger "
                    "WHERE action = 'refused' ORDER BY id")
        rows = cur.fetchall()
    conn.commit()
    return rows


def test_a_refusal_is_in_the_ledger_once_and_the_dashboard_finds_it_with_slack_down(
        databases, control_conn, fake_slack, probe):
    fake_slack.fail_always()  # Slack is down: the failure alert is never delivered
    run = probe.test()
    assert run.state == "failed"
    (ti,) = run.get_task_instances()
    assert ti.state == "failed" and ti.try_number == 1  # a refusal is not retried (the DAG allows 3)

    (entry,) = _refusals(control_conn)  # one entry per refusal, not one per try or per caller
    actor, target, reason, details = entry
    assert (actor, target, reason) == ("airflow:refusal_probe", "refusal_probe.refuse", REASON)
    assert details == {"dag_id": "refusal_probe", "run_id": run.run_id, "task_id": "refuse",
                       "refusal": "Refused"}

    # The dashboard's lookup (the same query and chooser the page uses): the ledger, not "see the log".
    failed = [{"dag_id": "refusal_probe", "run_id": run.run_id, "start_date": run.start_date,
               "end_date": run.end_date, "task_ids": ["refuse"]}]
    with control_conn.cursor() as cur:
        found = queries.run_failures(cur, SCHEMA, failed, datetime.now(UTC))["refusal_probe"]
    control_conn.commit()
    text, source = phases.failure_reason({"run_id": run.run_id, "start_date": run.start_date}, {
        "task_id": "refuse", "state": "failed", "start_date": ti.start_date}, [], found)
    assert source == "audit_ledger" and REASON in text and text.startswith("refused refusal_probe.refuse"), text


def test_a_dry_run_refusal_writes_nothing(databases, control_conn, fake_slack, probe):
    run = probe.test(run_conf={"dry_run": True})
    assert run.state == "failed"
    assert _refusals(control_conn) == []
