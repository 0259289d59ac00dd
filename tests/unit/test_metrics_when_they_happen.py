"""Metrics at the moment things happen (issue 15 item 8): the Airflow layer's emitter, installed when the
layer loads, sends a gate's figures when its evaluation is recorded and the backfill's progress at its
checkpoints (rate-limited) - to a real StatsD listener on 127.0.0.1 (``statsd`` fixture), not once per
sampler run. Without an emitter (the CLI, plain engine use) nothing is read or sent."""

from __future__ import annotations

import pytest

from migration_engine import control, telemetry
from migration_engine.backfill import backfill_settings, plan_entity
from migration_engine.config import load_config
from tests.backfill_fixtures import connectors

pytestmark = pytest.mark.timeout(180)

SCHEMA = "migration_control"
P = "airflow.zdm."


def test_each_recorded_gate_evaluation_is_emitted_when_it_happens(databases, control_conn, statsd):
    shadow = {"entity": "listings", "reads_compared": 400, "mismatches": 8, "mismatch_pct": 2.0}
    control.record_gate_result(control_conn, SCHEMA, gate="shadow_reads", status="waiting", figures=shadow,
                               reason="too few reads")
    control.record_gate_result(control_conn, SCHEMA, gate="shadow_reads", status="critical",
                               figures={**shadow, "mismatch_pct": 3.5}, reason="3.5 % mismatches")
    assert statsd.series(P + "gate.shadow_reads.status") == [1, 3]  # one per evaluation, in order
    assert statsd.series(P + "shadow.listings.mismatch_pct") == [2.0, 3.5]

    control.record_gate_result(control_conn, SCHEMA, gate="metric_alert:payment_processing_errors",
                               status="critical", reason="1 % > 0.5 %", figures={
                                   "operation": "payment_processing", "metric": "error_pct", "value": 1.0,
                                   "threshold": 0.5, "severity": "critical"})
    got = statsd.gauges()
    assert got[P + "gate.metric_alert_payment_processing_errors.status"] == 3
    assert got[P + "metric_alert.payment_processing_errors.value"] == 1.0
    assert got[P + "metric_alert.payment_processing_errors.threshold"] == 0.5
    assert got[P + "metric_alert.payment_processing_errors.firing"] == 1


def test_backfill_progress_is_emitted_at_checkpoints_rate_limited(databases, backfill_conns, statsd):
    cfg = load_config()
    legacy, new = backfill_conns
    # 2,000 listings in batches of 100: 10+ checkpoints per pass. With progress_interval 1 h no checkpoint
    # but each range's last is due, so each range emits once (at its end), not once per batch.
    s = backfill_settings(cfg, batch_size=100, min_batch_size=100, max_batch_size=100, parallelism=2,
                          progress_interval="1h")
    plan = plan_entity(legacy, new, cfg, "listings", s)
    from migration_engine.backfill import RangeWorker

    lc, nc = connectors(databases)
    results = [RangeWorker(cfg, plan.entity, j.run_id, j.range_no, s, lc, nc).run() for j in plan.jobs]
    batches = sum(r.batches for r in results)
    progress = statsd.series(P + "backfill.listings.progress_pct")
    assert batches >= 10 and len(progress) == len(plan.jobs), (batches, progress)  # rate-limited: once per range end
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert len(statsd.series(P + "backfill.listings.rows_per_second")) == len(plan.jobs)


def test_without_an_emitter_nothing_is_read_or_sent(databases, control_conn, statsd, monkeypatch):
    monkeypatch.setattr(telemetry, "_emitter", None)
    assert not telemetry.active()
    control.record_gate_result(control_conn, SCHEMA, gate="shadow_reads", status="passed", figures={},
                               reason="ok")
    assert statsd.gauges(settle=0.5) == {}


def test_an_emitter_that_fails_never_fails_the_evaluation(control_conn, monkeypatch, caplog):
    def broken(_metrics):
        raise OSError("statsd host unreachable")

    monkeypatch.setattr(telemetry, "_emitter", broken)
    monkeypatch.setattr(telemetry, "_warned", set())
    gate_id = control.record_gate_result(control_conn, SCHEMA, gate="dual_write_health", status="passed",
                                         figures={}, reason="ok")
    assert gate_id > 0 and "metrics not emitted (OSError" in caplog.text
