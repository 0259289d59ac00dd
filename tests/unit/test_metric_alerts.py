"""Metric alerts (the seed's alert table rows on application operations) against real Postgres and the fake
Slack: values planted through the application's stats client trip each alert at its threshold, with the
seed's severity, repeat as updates, and resolve when they clear."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
import yaml

from migration_engine import metric_alerts
from migration_engine.appclient import ControlClient
from migration_engine.config import DEFAULT_CONFIG_PATH, ConfigError, parse_config
from tests.gate_fixtures import SCHEMA, gate_rows

WARN, CRIT, MENTION = "#zdm-warn", "#zdm-crit", "<!subteam^S0ONCALL>"


@pytest.fixture
def cfg():
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["slack"] = {"warning_channel": WARN, "critical_channel": CRIT, "oncall_mention": MENTION}
    return parse_config(data)


def plant(databases, at: datetime, operation: str, *, requests: int, errors: int = 0, latency_ms: float = 10.0,
          instance: str = "app-1") -> None:
    """What the application reports: ``requests`` calls of ``operation`` in the minute of ``at``."""
    client = ControlClient(lambda: psycopg2.connect(databases.legacy_dsn), SCHEMA, instance=instance,
                           clock=lambda: at.timestamp())
    for i in range(requests):
        client.record_operation(operation, ok=i >= errors, latency_ms=latency_ms)
    client.close()


def by_name(outcomes) -> dict:
    return {o.name: o for o in outcomes}


def evaluate(control_conn, cfg, now):
    return by_name(metric_alerts.evaluate(control_conn, cfg, a, now=now, dag_id="migration_metric_alerts",
                                          run_id="r") for a in cfg.alerts.metrics)


def test_shipped_config_has_the_seed_rows(cfg):
    rows = {a.name: (a.operation, a.metric, a.threshold, a.severity) for a in cfg.alerts.metrics}
    assert rows == {
        "cross_db_latency_p95": ("cross_db_query", "p95_ms", 200, "warning"),
        "invoice_state_transition_errors": ("invoice_state_transition", "error_pct", 1, "critical"),
        "payment_processing_errors": ("payment_processing", "error_pct", 0.5, "critical"),
    }


def test_seed_alerts_trip_at_their_threshold_repeat_as_updates_and_resolve(databases, control_conn, cfg,
                                                                          fake_slack):
    t0 = datetime.now(UTC) - timedelta(hours=2)
    ledger_before = _ledger_size(control_conn)
    # Exactly at each threshold: 0.5 % payments, 1 % invoices, p95 200 ms - "above" is strict, nothing fires.
    plant(databases, t0, "payment_processing", requests=200, errors=1)
    plant(databases, t0, "invoice_state_transition", requests=200, errors=2)
    plant(databases, t0, "cross_db_query", requests=200, latency_ms=200)
    at = evaluate(control_conn, cfg, t0 + timedelta(minutes=2))
    assert {n: o.status for n, o in at.items()} == dict.fromkeys(at, "passed"), at
    assert fake_slack.messages() == []

    # Just above: 1 % payments, 1.5 % invoices (critical, paged), p95 201 ms (warning, not paged).
    t1 = t0 + timedelta(minutes=30)
    plant(databases, t1, "payment_processing", requests=200, errors=2)
    plant(databases, t1, "invoice_state_transition", requests=200, errors=3)
    plant(databases, t1, "cross_db_query", requests=200, latency_ms=201)
    above = evaluate(control_conn, cfg, t1 + timedelta(minutes=2))
    assert {n: (o.status, o.alert) for n, o in above.items()} == {
        "payment_processing_errors": ("critical", "posted"),
        "invoice_state_transition_errors": ("critical", "posted"),
        "cross_db_latency_p95": ("warning", "posted")}
    posted = fake_slack.messages()
    assert len(posted) == 3
    crit = [m for m in posted if m["channel"] == CRIT]
    warn = [m for m in posted if m["channel"] == WARN]
    assert len(crit) == 2 and all(MENTION in m["text"] for m in crit)
    assert len(warn) == 1 and MENTION not in warn[0]["text"] and "cross_db_query" in warn[0]["text"]
    assert any("1.00% (2/200)" in m["text"] and "payment_processing" in m["text"] for m in crit), crit
    assert any("Next:" in json.dumps(m["blocks"]) for m in crit)
    assert [r[1] for r in gate_rows(control_conn, "metric_alert:payment_processing_errors")] == ["passed", "critical"]

    # Still above a few minutes later: the open alerts are updated, not posted again.
    again = evaluate(control_conn, cfg, t1 + timedelta(minutes=4))
    assert {o.alert for o in again.values()} == {"updated"}
    assert len(fake_slack.messages()) == 3 and len(fake_slack.messages("chat.update")) == 3

    # Thin traffic (below min_samples) proves nothing: not judged, the alerts stay open.
    t2 = t1 + timedelta(minutes=40)
    plant(databases, t2, "payment_processing", requests=50, errors=50)
    thin = evaluate(control_conn, cfg, t2 + timedelta(minutes=2))
    assert thin["payment_processing_errors"].status == "waiting" and thin["payment_processing_errors"].alert is None
    assert _open(control_conn) == {"metric:payment_processing_errors", "metric:invoice_state_transition_errors",
                                   "metric:cross_db_latency_p95"}

    # Cleared: healthy traffic in a later window resolves each alert (Slack message marked, thread reply).
    t3 = t2 + timedelta(minutes=40)
    plant(databases, t3, "payment_processing", requests=400)
    plant(databases, t3, "invoice_state_transition", requests=400)
    plant(databases, t3, "cross_db_query", requests=400, latency_ms=40)
    cleared = evaluate(control_conn, cfg, t3 + timedelta(minutes=2))
    assert {n: (o.status, o.alert) for n, o in cleared.items()} == dict.fromkeys(cleared, ("passed", "resolved"))
    assert _open(control_conn) == set()
    replies = [m for m in fake_slack.messages() if m.get("thread_ts")]
    assert len(replies) == 3 and all("Resolved" in m["text"] for m in replies)
    resolved_updates = [m for m in fake_slack.messages("chat.update") if "RESOLVED" in m["text"]]
    assert len(resolved_updates) == 3
    # Every 5 minutes, so telemetry, not audited changes: gate_results and alerts keep the state; the
    # ledger gets nothing (only an undelivered page would be audited: alert.undelivered).
    assert _ledger_size(control_conn) == ledger_before


def _ledger_size(conn) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {SCHEMA}.audit_ledger")
        n = cur.fetchone()[0]
    conn.commit()
    return n


def _open(conn) -> set[str]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT dedup_key FROM {SCHEMA}.alerts WHERE status = 'open'")
        rows = {r[0] for r in cur.fetchall()}
    conn.commit()
    return rows


def test_dry_run_measures_and_records_nothing(databases, control_conn, cfg, fake_slack):
    plant(databases, datetime.now(UTC), "payment_processing", requests=200, errors=100)
    out = metric_alerts.evaluate_all(control_conn, cfg, context={"dag_id": "d", "run_id": "r"}, dry_run=True)
    statuses = {a["name"]: a["status"] for a in out["alerts"]}
    assert out["dry_run"] and statuses["metric_alert:payment_processing_errors"] == "critical"
    assert gate_rows(control_conn) == [] and fake_slack.messages() == []


def test_legacy_keys_are_aliases_and_bad_rows_are_named():
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["alerts"] = {"payment_error_critical_pct": 0.2, "cross_db_latency_p95_warn_ms": 300}
    rows = {a.name: a for a in parse_config(data).alerts.metrics}
    payment = rows["payment_processing_errors"]
    assert payment.threshold == 0.2 and payment.severity == "critical"
    assert rows["cross_db_latency_p95"].threshold == 300 and rows["cross_db_latency_p95"].metric == "p95_ms"
    shipped = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["alerts"]
    data["alerts"] = {**shipped, "invoice_state_error_critical_pct": 2}
    rows = {a.name: a for a in parse_config(data).alerts.metrics}
    assert rows["invoice_state_transition_errors"].threshold == 2 and len(rows) == 3  # overrides, no duplicate

    data["alerts"] = {"metrics": [shipped["metrics"][0], shipped["metrics"][0]]}
    with pytest.raises(ConfigError, match="duplicate alert name"):
        parse_config(data)
    data["alerts"] = {"metrics": [{**shipped["metrics"][1], "operation": "Payment Processing"}]}
    with pytest.raises(ConfigError, match="operation"):
        parse_config(data)
    data["alerts"] = {"metrics": [{**shipped["metrics"][1], "threshold": 100}]}
    with pytest.raises(ConfigError, match="below 100"):
        parse_config(data)


def test_app_client_rejects_a_bad_operation_name(databases):
    client = ControlClient(lambda: psycopg2.connect(databases.legacy_dsn), SCHEMA)
    with pytest.raises(ValueError, match="operation name must match"):
        client.record_operation("DROP TABLE x", ok=True)
