"""migration_metric_alerts, run with dag.test(): the schedule, a seed alert tripping and resolving through
the DAG, and the dry run changing nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.airflow_helpers import get_dag, run_dag
from tests.cutover_fixtures import gate_rows, prepare_control, write_config
from tests.gate_fixtures import write_operation_stats

pytestmark = pytest.mark.timeout(300)

DAG = "migration_metric_alerts"


def test_scheduled_every_evaluate_every(airflow_db):
    dag = get_dag(DAG)
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.timetable.delta == timedelta(minutes=5)  # alerts.evaluate_every


def test_payment_errors_page_once_then_resolve_when_they_clear(databases, airflow_db, fake_slack, tmp_path,
                                                                 monkeypatch, statsd):
    cfg = write_config(tmp_path, monkeypatch, {})
    prepare_control(databases)
    conn = databases.connect("legacy")
    try:
        now = datetime.now(UTC)
        # 2 % payment errors over the last 5 minutes (seed: > 0.5 % is critical); invoices fine, cross-DB fast.
        write_operation_stats(conn, "payment_processing", end=now, minutes=5, requests=100, errors=2)
        write_operation_stats(conn, "invoice_state_transition", end=now, minutes=5, requests=100, errors=0)
        write_operation_stats(conn, "cross_db_query", end=now, minutes=5, requests=100, p95_ms=30)
        state, tasks = run_dag(DAG)
        assert state == "success", tasks
        (page,) = fake_slack.messages()
        assert page["channel"] == cfg.slack.critical_channel and "payment_processing" in page["text"]
        assert "2.00% (10/500)" in page["text"]
        assert [r[0] for r in gate_rows(databases, "metric_alert:payment_processing_errors")] == ["critical"]
        assert [r[0] for r in gate_rows(databases, "metric_alert:invoice_state_transition_errors")] == ["passed"]
        # The values went out as metrics when evaluated (real StatsD listener), not at the next sampler run.
        got = statsd.gauges()
        assert got["airflow.zdm.metric_alert.payment_processing_errors.value"] == 2.0
        assert got["airflow.zdm.metric_alert.payment_processing_errors.threshold"] == 0.5
        assert got["airflow.zdm.metric_alert.payment_processing_errors.firing"] == 1
        assert got["airflow.zdm.metric_alert.invoice_state_transition_errors.firing"] == 0
        assert got["airflow.zdm.gate.metric_alert_payment_processing_errors.status"] == 3  # critical

        # The errors stop: healthy minutes outnumber the bad ones in the window -> resolved by the next run.
        write_operation_stats(conn, "payment_processing", end=now, minutes=5, requests=1000, errors=0)
        state, tasks = run_dag(DAG)
        assert state == "success", tasks
        assert len(fake_slack.messages()) == 2  # no second page: the resolution reply only
        reply = fake_slack.messages()[-1]
        assert reply.get("thread_ts") and "Resolved" in reply["text"] and "payment_processing" in reply["text"]
        assert [r[0] for r in gate_rows(databases, "metric_alert:payment_processing_errors")] == ["critical",
                                                                                                  "passed"]
        assert statsd.series("airflow.zdm.metric_alert.payment_processing_errors.firing") == [1, 0]
    finally:
        conn.close()


def test_dry_run_changes_nothing(databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    from tests.snapshots import snapshot, unchanged

    write_config(tmp_path, monkeypatch, {})
    prepare_control(databases)
    conn = databases.connect("legacy")
    try:
        write_operation_stats(conn, "payment_processing", end=datetime.now(UTC), minutes=5, requests=100, errors=50)
    finally:
        conn.close()
    before = snapshot(databases.legacy_dsn)
    state, tasks = run_dag(DAG, {"dry_run": True})
    assert state == "success", tasks
    assert unchanged(before, snapshot(databases.legacy_dsn)) == [] and fake_slack.messages() == []
