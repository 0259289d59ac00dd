"""migration_consistency_hourly, run for real with dag.test(): schedule, paging with dedup, dry run."""

from __future__ import annotations

import pytest

from tests.airflow_helpers import get_dag
from tests.consistency_fixtures import (
    SCHEMA,
    dry_run_changes_nothing,
    make_config,
    planned_sql,
    plant_faults,
    repair_faults,
    run_dag_run,
)

pytestmark = pytest.mark.timeout(300)

DAG = "migration_consistency_hourly"


def test_hourly_dag_is_scheduled_hourly_without_catchup(airflow_db):
    dag = get_dag(DAG)
    assert dag.schedule == "@hourly" and dag.timetable.expression == "0 * * * *"  # minute 0 of every hour
    assert dag.catchup is False and dag.max_active_runs == 1
    assert make_config().consistency.schedule == "@hourly"


def page_ts(fake_slack) -> str:
    return next(c.response["ts"] for c in fake_slack.calls_to("chat.postMessage"))


def test_hourly_pages_once_updates_while_failing_and_resolves(consistent, airflow_db, consistency_config, fake_slack):
    faults = plant_faults(consistent)
    critical = make_config().slack.critical_channel

    dr, tasks = run_dag_run(DAG)
    assert dr.state == "failed" and tasks["escalate"] == "success" and tasks["verdict"] == "failed", tasks
    posts = fake_slack.messages()
    assert len(posts) == 1, [p.get("text") for p in posts]  # one page, no second one from the failure callback
    page = posts[0]
    assert page["channel"] == critical and "CRITICAL" in page["text"]
    body = page["text"]
    for key in (f"missing_in_new: {faults.missing_in_new}", f"missing_in_old: {faults.extra_in_new}",
                f"changed: {faults.changed_title} (title)", f"{faults.orphan_transaction} → 8000000",
                f"invalid_value: {faults.invalid_payment_tenant}", f"null_value: {faults.null_payment_tenant}"):
        assert key in body, (key, body)

    dr, _ = run_dag_run(DAG)
    assert dr.state == "failed"
    assert len(fake_slack.messages()) == 1, "the same failure must not page twice"
    updates = fake_slack.messages("chat.update")
    assert len(updates) == 1 and "Seen 2 times" in str(updates[-1]["blocks"])

    repair_faults(consistent, faults)
    dr, tasks = run_dag_run(DAG)
    assert dr.state == "success", tasks
    posts = fake_slack.messages()
    assert len(posts) == 2 and "Resolved" in posts[-1]["text"] and posts[-1]["thread_ts"] == page_ts(fake_slack)
    (status,) = consistent.query("legacy", f"SELECT status FROM {SCHEMA}.alerts")
    assert status == ("resolved",)


def test_hourly_dry_run_sends_nothing_and_changes_nothing(consistent, airflow_db, consistency_config, fake_slack):
    plant_faults(consistent)  # would page in a real run
    dr, tasks = dry_run_changes_nothing(consistent, DAG)
    assert tasks["escalate"] == "success" and tasks["verdict"] == "success", tasks
    assert "-- Great Expectations checkpoint" in planned_sql(dr)
    assert fake_slack.calls_to("chat.postMessage") == [] and fake_slack.calls_to("chat.update") == []
