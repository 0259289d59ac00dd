"""Metric alerts: the seed's alert table rows that watch the application, evaluated on a schedule.

Each ``alerts.metrics`` row names an operation the application reports through the stats contract
(``ControlClient.record_operation`` -> ``operation_stats``, per minute), a metric (``error_pct`` or
``p95_ms``), a threshold, a severity and a window. The ``migration_metric_alerts`` DAG calls
:func:`evaluate_all` every ``alerts.evaluate_every``; each evaluation:

* measures the window (``gates.window.window_stats``: the same rules as every gate);
* is recorded in ``gate_results`` as gate ``metric_alert:<name>`` (status passed / warning /
  critical / waiting);
* above the threshold -> ``send_alert`` with dedup key ``metric:<name>``: the first breach pages,
  later breaches update that message (occurrence count, latest figure) instead of paging again;
* back at or below the threshold (with enough samples) -> the open alert is **resolved**
  (its Slack message marked resolved, a reply in its thread);
* fewer than ``min_samples`` requests -> ``waiting``: nothing fires and an open alert stays open
  (too little traffic proves neither breach nor recovery); the row says so.

Why a DAG of its own rather than a task of the hourly consistency DAG: the seed's rows are about
minutes (a payment error spike), the consistency run takes minutes itself and runs hourly; a
5-minute schedule with a 15-minute window sees a spike within ~5 minutes and never overlaps itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from migration_engine import control
from migration_engine.config import MetricAlert, MigrationConfig
from migration_engine.gates import GateResult
from migration_engine.gates.window import fmt_duration, window_stats

log = logging.getLogger(__name__)


def dedup_key(alert: MetricAlert) -> str:
    return f"metric:{alert.name}"


def gate_name(alert: MetricAlert) -> str:
    return f"metric_alert:{alert.name}"


def _unit(alert: MetricAlert) -> str:
    return "%" if alert.metric == "error_pct" else " ms"


def measure(conn, cfg: MigrationConfig, alert: MetricAlert, now: datetime) -> GateResult:
    """One alert's status over its window (read-only; no commit)."""
    ws = window_stats(conn, schema=cfg.control_schema, table="operation_stats", total_column="requests",
                      bad_column="errors", start=now - alert.window, end=now, max_gap=alert.window,
                      filters={"operation": alert.operation},
                      latency_column="p95_latency_ms" if alert.metric == "p95_ms" else None)
    value = ws.bad_pct if alert.metric == "error_pct" else ws.p95_latency_ms
    span = fmt_duration(alert.window)
    figures: dict[str, Any] = {
        "operation": alert.operation, "metric": alert.metric, "value": None if value is None else round(value, 3),
        "threshold": alert.threshold, "severity": alert.severity, "window": span, "requests": ws.total,
        "errors": ws.bad, "min_samples": alert.min_samples}
    what = "error rate" if alert.metric == "error_pct" else "p95 latency"
    if ws.total < alert.min_samples or value is None:
        return GateResult(gate_name(alert), "waiting", (
            f"{alert.operation}: only {ws.total:,} requests in the last {span} (need {alert.min_samples:,} to "
            "judge); not evaluated"), figures)
    shown = f"{value:.2f}%" if alert.metric == "error_pct" else f"{value:.0f} ms"
    detail = f" ({ws.bad:,}/{ws.total:,})" if alert.metric == "error_pct" else f" over {ws.total:,} requests"
    summary = f"{alert.operation} {what} {shown}{detail} in the last {span}"
    if value > alert.threshold:
        return GateResult(gate_name(alert), alert.severity,
                          f"{summary}, above the {alert.severity} threshold {alert.threshold:g}{_unit(alert)}",
                          figures)
    return GateResult(gate_name(alert), "passed", f"{summary}, within {alert.threshold:g}{_unit(alert)}", figures)


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str
    reason: str
    alert: str | None  # posted | updated | resolved | None (nothing sent)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "reason": self.reason, "alert": self.alert}


def evaluate(conn, cfg: MigrationConfig, alert: MetricAlert, *, now: datetime | None = None,
             dag_id: str | None = None, run_id: str | None = None) -> Outcome:
    """Measure, record, fire or resolve one metric alert."""
    from migration_engine.alerts import resolve_alert, send_alert

    now = now or datetime.now(UTC)
    result = measure(conn, cfg, alert, now)
    conn.rollback()  # end the read-only transaction before the writes below commit their own
    control.record_gate_result(conn, cfg.control_schema, gate=result.gate, status=result.status,
                               figures=result.figures, reason=result.reason, dag_id=dag_id, run_id=run_id)
    action = None
    if result.status in ("warning", "critical"):
        text = result.reason + (f"\nNext: {alert.next_step}" if alert.next_step else "") + \
            "\nThis alert resolves by itself when the metric is back within its threshold."
        res = send_alert(result.status, f"{alert.name}: {alert.operation} {alert.metric} above "
                         f"{alert.threshold:g}{_unit(alert)}", text, figures=result.figures, dag_id=dag_id,
                         run_id=run_id, cfg=cfg, dedup_key=dedup_key(alert), conn=conn, schema=cfg.control_schema,
                         conditions=[result.gate])
        action = res.action
    elif result.status == "passed":
        res = resolve_alert(dedup_key(alert), f"cleared: {result.reason}", conn=conn, schema=cfg.control_schema,
                            cfg=cfg)
        action = "resolved" if res.action == "resolved" else None
    log.info("metric alert %s: %s%s - %s", alert.name, result.status, f" ({action})" if action else "",
             result.reason)
    return Outcome(alert.name, result.status, result.reason, action)


def evaluate_all(conn, cfg: MigrationConfig, *, actor: str = "", context: dict[str, Any] | None = None,
                 dry_run: bool = False) -> dict[str, Any]:
    """Every configured metric alert once (the scheduled DAG's task). ``dry_run``: measure and log
    only - nothing recorded, nothing sent."""
    from migration_engine import control_schema

    context = context or {}
    control_schema.require_current(conn, cfg.control_schema)  # operation_stats needs migration 009
    if not conn.autocommit:
        conn.rollback()
    now = datetime.now(UTC)
    if dry_run:
        results = [measure(conn, cfg, a, now) for a in cfg.alerts.metrics]
        conn.rollback()
        for r in results:
            log.info("dry run: %s would be %s - %s (nothing recorded or sent)", r.gate, r.status, r.reason)
        return {"dry_run": True, "evaluated": len(results),
                "alerts": [{"name": r.gate, "status": r.status, "reason": r.reason} for r in results]}
    outcomes = [evaluate(conn, cfg, a, now=now, dag_id=context.get("dag_id"), run_id=context.get("run_id"))
                for a in cfg.alerts.metrics]
    return {"evaluated": len(outcomes), "alerts": [o.as_dict() for o in outcomes],
            "firing": [o.name for o in outcomes if o.status in ("warning", "critical")]}
