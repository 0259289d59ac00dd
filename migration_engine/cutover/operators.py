"""Operators of the phase-5 DAG: one read-rollout step, and the end of the keep_old_sync period.

Kept light at import (the DAG file imports this module): psycopg2 work, config loading and the
trigger classes are imported inside ``execute``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException


class ReadRolloutStepOperator(BaseOperator):
    """Set ``read_new_pct`` to this step's percentage and hold it, checking every interval.

    The hold is deferred to :class:`~migration_engine.cutover.trigger.ReadRolloutHoldTrigger`; on a
    breach (or no data) the trigger has already set ``read_new_pct = 0`` and written the reason to
    the ledger when this task resumes - ``execute_complete`` pages on-call (critical) and fails the
    run with the reason (no retry: a rolled-back rollout needs a human).
    """

    ui_color = "#f9e4b7"

    def __init__(self, *, pct: int, baseline_task_id: str = "measure_baseline", **kwargs: Any) -> None:
        kwargs.setdefault("retries", 0)
        super().__init__(**kwargs)
        self.pct = int(pct)
        self.baseline_task_id = baseline_task_id

    def execute(self, context) -> None:
        from migration_engine import control, db
        from migration_engine.airflow.dags import config
        from migration_engine.cutover.rollout import step_for
        from migration_engine.cutover.trigger import ReadRolloutHoldTrigger
        from migration_engine.gates.error_rate import take_snapshot

        cfg = config()
        co = cfg.cutover
        step = step_for(cfg, self.pct)
        ti = context["ti"]
        baseline = ti.xcom_pull(task_ids=self.baseline_task_id) or {}
        if "baseline_pct" not in baseline:
            raise AirflowFailException(f"no old-path baseline from task {self.baseline_task_id!r}; run it first")
        actor = f"airflow:{ti.dag_id}"
        ctx = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "step_pct": self.pct}
        now = datetime.now(UTC)
        hold_until = now + step.hold
        with db.connection(cfg.connections.legacy) as conn:
            from migration_engine.control import ensure_flag

            change = ensure_flag(conn, cfg.control_schema, "read_new_pct", self.pct, actor=actor,
                                 reason=f"read rollout {step.label}", context=ctx)
            snapshot = take_snapshot(conn, cfg, now=now)
            control.audit(conn, cfg.control_schema, actor=actor, action="read_rollout.step_started",
                          target=f"read_new_pct={self.pct}",
                          details={**ctx, "hold": str(step.hold), "hold_until": hold_until.isoformat(),
                                   "check_interval": str(co.check_interval), "baseline": baseline,
                                   "flag_changed": change is not None},
                          reason=f"read rollout {step.label}")
        self.log.info("read_new_pct=%s; holding until %s, checking every %s", self.pct,
                      hold_until.isoformat(timespec="seconds"), co.check_interval)
        self.defer(
            trigger=ReadRolloutHoldTrigger(
                conn_id=cfg.connections.legacy, schema=cfg.control_schema, entities=list(cfg.entities),
                pct=self.pct, hold_until=hold_until.isoformat(), interval_s=co.check_interval.total_seconds(),
                max_increase_points=co.error_rate_max_increase_points, min_requests=co.min_requests_per_check,
                baseline_pct=baseline["baseline_pct"], max_inconclusive=co.max_inconclusive_checks,
                snapshot=snapshot.as_dict(), dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id),
            method_name="execute_complete",
            # A stuck triggerer must surface: the hold plus a few intervals of slack.
            timeout=step.hold + max(3 * co.check_interval, timedelta(minutes=10)),
        )

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from migration_engine import control, db
        from migration_engine.airflow.dags import config
        from migration_engine.alerts import send_alert
        from migration_engine.control import ensure_flag

        cfg = config()
        ti = context["ti"]
        if not isinstance(event, dict) or "status" not in event:
            raise AirflowFailException(f"read rollout {self.pct}%: malformed trigger event {event!r}")
        status, reason, figures = event["status"], event.get("reason", ""), event.get("figures") or {}
        actor = f"airflow:{ti.dag_id}"
        ctx = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "step_pct": self.pct}
        if status == "passed":
            with db.connection(cfg.connections.legacy) as conn:
                control.audit(conn, cfg.control_schema, actor=actor, action="read_rollout.step_passed",
                              target=f"read_new_pct={self.pct}", details={**ctx, "figures": figures}, reason=reason)
            self.log.info("read rollout %s%% passed: %s", self.pct, reason)
            return event
        rolled_back = bool(event.get("rolled_back"))
        if status in ("breach", "no_data", "error") and not rolled_back:
            # The trigger could not write the flag (database down?): try once more from here.
            try:
                with db.connection(cfg.connections.legacy) as conn:
                    ensure_flag(conn, cfg.control_schema, "read_new_pct", 0, actor=actor, context=ctx,
                                reason=f"automatic read-rollout rollback (retried by the task): {reason}")
                rolled_back = True
            except Exception as exc:  # noqa: BLE001 - reported in the page and the failure
                event["rollback_error"] = f"{event.get('rollback_error')}; retry from the task: {exc}"
        if status == "flag_changed":
            title = f"Read rollout stopped at {self.pct}%: read_new_pct changed outside the rollout"
            severity = "warning"
            text = reason
        elif rolled_back:
            title = f"Read rollout rolled back at {self.pct}%: read_new_pct = 0"
            severity = "critical"
            text = (f"{reason}\n\nreads are back on the old tables (read_new_pct = 0, set automatically at "
                    f"{event.get('rolled_back_at')}). Investigate (slow queries? missing indexes? data?), then "
                    "re-run the cutover DAG to start again at the first step.")
        else:
            title = f"Read rollout at {self.pct}% must be rolled back BY HAND"
            severity = "critical"
            text = (f"{reason}\n\nthe automatic rollback failed: {event.get('rollback_error')}. Set "
                    "read_new_pct = 0 now (migration_rollback_reads DAG or the control schema).")
        send_alert(severity, title, text, figures={k: v for k, v in figures.items() if not isinstance(v, dict)},
                   dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, cfg=cfg)
        suffix = "read_new_pct is back to 0" if rolled_back else "ROLLBACK FAILED - set read_new_pct = 0 by hand"
        raise AirflowFailException(f"read rollout {self.pct}% {status}: {reason} ({suffix})")


class KeepOldSyncEndOperator(BaseOperator):
    """Wait (deferred) until the keep_old_sync period after the write cutover ends, then turn it off."""

    ui_color = "#e0e7f9"

    def __init__(self, *, cutover_task_id: str = "write_cutover", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cutover_task_id = cutover_task_id

    def execute(self, context) -> dict[str, Any] | None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        cutover = context["ti"].xcom_pull(task_ids=self.cutover_task_id) or {}
        until = cutover.get("keep_old_sync_until")
        if not until:
            self.log.info("keep_old_sync is not configured (cutover.keep_old_sync): nothing to end")
            return {"keep_old_sync": "not configured"}
        moment = datetime.fromisoformat(until)
        if moment > datetime.now(UTC):
            self.log.info("keep_old_sync stays on until %s", until)
            self.defer(trigger=DateTimeTrigger(moment=moment), method_name="execute_complete")
        return self.execute_complete(context)

    def execute_complete(self, context, event: Any = None) -> dict[str, Any]:
        from migration_engine import db
        from migration_engine.airflow.dags import config
        from migration_engine.control import current_flags, ensure_flag

        cfg = config()
        ti = context["ti"]
        with db.connection(cfg.connections.legacy) as conn:
            flags = current_flags(conn, cfg.control_schema)
            if not flags.get("write_to_new"):
                self.log.warning("write_to_new is off (a rollback happened): leaving keep_old_sync as it is")
                return {"keep_old_sync": "left as is", "write_to_new": False}
            change = ensure_flag(conn, cfg.control_schema, "keep_old_sync", False, actor=f"airflow:{ti.dag_id}",
                                 reason="the keep_old_sync period after the write cutover is over",
                                 context={"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id})
        return {"keep_old_sync": "turned off" if change else "already off"}
