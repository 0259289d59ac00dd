"""RecoveryWatchOperator: after rollback scenario 1 or 2, wait (deferred) for the old path to be healthy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException


class RecoveryWatchOperator(BaseOperator):
    """Verify recovery within ``cutover.rollback_verify_window`` of the flag change (task ``flag_task_id``).

    The baseline is the DAG param ``baseline_pct`` if given, else the old path's error rate over
    ``cutover.baseline_window`` before the rollback. Not recovered in time -> critical page and the
    task fails with the last figures (the flag stays rolled back).
    """

    template_fields = ("baseline_pct",)
    ui_color = "#d6eaf8"

    def __init__(self, *, scenario: str, flag_task_id: str, baseline_pct: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.scenario = scenario
        self.flag_task_id = flag_task_id
        self.baseline_pct = baseline_pct

    def execute(self, context) -> None:
        from migration_engine import control, db
        from migration_engine.airflow.dags import config
        from migration_engine.rollback.health import baseline_before
        from migration_engine.rollback.simple import SCENARIOS
        from migration_engine.rollback.trigger import RecoveryTrigger

        cfg = config()
        co = cfg.cutover
        ti = context["ti"]
        applied = ti.xcom_pull(task_ids=self.flag_task_id) or {}
        if "changed_at" not in applied:
            raise AirflowFailException(f"no result from {self.flag_task_id!r}; it must run first")
        changed_at = datetime.fromisoformat(applied["changed_at"])
        mode = SCENARIOS[self.scenario]["mode"]
        given = self.baseline_pct
        with db.connection(cfg.connections.legacy) as conn:
            if given not in (None, "", "None"):
                try:
                    baseline = float(given)
                except (TypeError, ValueError):
                    raise AirflowFailException(f"baseline_pct must be a number, got {given!r}") from None
                figures = {"baseline_source": "given by the operator"}
            else:
                baseline, figures = baseline_before(conn, cfg, mode, changed_at)
                figures["baseline_source"] = "old path before the rollback"
            if baseline is None:
                raise AirflowFailException(
                    f"cannot verify recovery: the old path served only {figures['baseline_requests']} requests in the "
                    f"{figures['baseline_window']} before the rollback (need {co.min_requests_per_check}); the flag IS "
                    "rolled back - re-run with the baseline_pct param (the normal error rate, in %) to verify")
            control.audit(conn, cfg.control_schema, actor=f"airflow:{ti.dag_id}",
                          action=f"rollback.{self.scenario}.verify_started", target=SCENARIOS[self.scenario]["flag"],
                          details={"dag_id": ti.dag_id, "run_id": ti.run_id, "baseline_pct": baseline, **figures},
                          reason="watching for recovery")
        deadline = changed_at + co.rollback_verify_window
        self.log.info("baseline %.3f%% (%s); recovered needed by %s", baseline, figures["baseline_source"],
                      deadline.isoformat(timespec="seconds"))
        self.defer(
            trigger=RecoveryTrigger(
                conn_id=cfg.connections.legacy, schema=cfg.control_schema, entities=list(cfg.entities), mode=mode,
                deadline=deadline.isoformat(), interval_s=co.check_interval.total_seconds(),
                propagation_s=co.flag_propagation.total_seconds(), baseline_pct=baseline,
                max_increase_points=co.error_rate_max_increase_points, min_requests=co.min_requests_per_check,
                dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id),
            method_name="execute_complete",
            timeout=max(deadline - datetime.now(UTC), timedelta(0)) + co.flag_propagation + timedelta(minutes=10),
        )

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from migration_engine import db
        from migration_engine.airflow.dags import config
        from migration_engine.alerts import send_alert
        from migration_engine.rollback.simple import SCENARIOS, record_outcome

        cfg = config()
        ti = context["ti"]
        if not isinstance(event, dict) or "status" not in event:
            raise AirflowFailException(f"malformed trigger event {event!r}")
        recovered = event["status"] == "recovered"
        actor = f"airflow:{ti.dag_id}"
        ctx = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id}
        with db.connection(cfg.connections.legacy) as conn:
            record_outcome(conn, cfg, self.scenario, actor=actor, context=ctx, verified=recovered,
                           reason=event.get("reason", ""), figures=event.get("figures") or {})
        title = SCENARIOS[self.scenario]["title"]
        figures = {k: v for k, v in (event.get("figures") or {}).items() if not isinstance(v, dict)}
        if recovered:
            send_alert("info", f"{title}: recovered", event.get("reason", ""), figures=figures, dag_id=ti.dag_id,
                       task_id=ti.task_id, run_id=ti.run_id, cfg=cfg)
            return event
        send_alert("critical", f"{title}: NOT recovered within {cfg.cutover.rollback_verify_window}",
                   f"{event.get('reason', '')}\n\nThe flag stays rolled back. Investigate the old path itself.",
                   figures=figures, dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, cfg=cfg)
        raise AirflowFailException(f"not recovered within {cfg.cutover.rollback_verify_window}: {event.get('reason')}")
