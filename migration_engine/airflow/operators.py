"""Deferrable operators of the waits that are not gates: a read-rollout step's hold (phase 5), the
end of the keep_old_sync period (phase 5), and the recovery watch of rollback scenarios 1 and 2.

Each defers to a trigger of :mod:`migration_engine.airflow.triggers` (the one polling loop); what is
checked and decided lives in the engine watches (``cutover.hold_watch``, ``rollback.recovery_watch``).
Kept light at import (DAG files import this module): psycopg2 work, config loading and the trigger
classes are imported inside ``execute``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from migration_engine.airflow.waits import resume, wait_retries


class ReadRolloutStepOperator(BaseOperator):
    """Set ``read_new_pct`` to this step's percentage and hold it, checking every interval.

    The hold is deferred to :class:`~migration_engine.airflow.triggers.ReadRolloutHoldTrigger`; on a
    breach (or no data) the trigger has already set ``read_new_pct = 0`` and written the reason to
    the ledger when this task resumes - ``execute_complete`` pages on-call (critical) and fails the
    run with the reason (no retry: a rolled-back rollout needs a human).

    A retried try (``retries`` >= 1: a spurious failure of the deferred task) continues the hold: the
    hold end comes from the first try's ``wait.started`` record, the flag is not flipped again (it
    may have been changed by hand meanwhile: the watch then stops with ``flag_changed``), the watch
    resumes its counters from the last check in ``gate_results``, and a rollback the trigger already
    made is reported (one page) instead of being undone.
    """

    ui_color = "#f9e4b7"

    def __init__(self, *, pct: int, baseline_task_id: str = "measure_baseline", **kwargs: Any) -> None:
        super().__init__(**wait_retries(kwargs.get("task_id"), kwargs))
        self.pct = int(pct)
        self.baseline_task_id = baseline_task_id

    def execute(self, context) -> None:
        from migration_engine import control, db
        from migration_engine.airflow.dags import config
        from migration_engine.airflow.triggers import ReadRolloutHoldTrigger
        from migration_engine.cutover.rollout import step_for
        from migration_engine.cutover.steps import rollout_flag
        from migration_engine.gates.error_rate import take_snapshot
        from migration_engine.steps import StepRunner

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
        with db.connection(cfg.connections.legacy) as conn:
            wait = resume(conn, cfg.control_schema, self, ti, kind="read_rollout_hold", actor=actor,
                          fresh={**ctx, "hold_until": (now + step.hold).isoformat(), "hold_started": now.isoformat()},
                          reason=f"read rollout {step.label}: hold")
            hold_until = datetime.fromisoformat(wait.details["hold_until"])
            hold_started = wait.details["hold_started"]
            if wait.resumed:
                done = rolled_back_event(conn, cfg.control_schema, ti, self.pct, since=hold_started)
                if done is not None:  # the trigger rolled back before the spurious failure: report it, once
                    return self.execute_complete(context, done)
            else:
                # the flip is a step (plan/apply/revert, state in step_state); a re-run finds it done
                runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor, context=ctx)
                (flip,) = runner.apply([rollout_flag(cfg, self.pct)])
                change = flip.changed or None
            snapshot = take_snapshot(conn, cfg, now=now)
            if not wait.resumed:
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
                snapshot=snapshot.as_dict(), dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                hold_started=hold_started, max_p95_increase_pct=co.performance_max_p95_increase_pct,
                min_p95_increase_ms=co.performance_min_increase_ms, baseline_p95_ms=baseline.get("baseline_p95_ms")),
            method_name="execute_complete",
            # A stuck triggerer must surface: the (rest of the) hold plus a few intervals of slack.
            timeout=max(hold_until - now, timedelta(0)) + max(3 * co.check_interval, timedelta(minutes=10)),
        )

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from migration_engine import control, db
        from migration_engine.airflow.dags import config
        from migration_engine.alerts import send_alert
        from migration_engine.cutover.steps import rollout_flag
        from migration_engine.steps import StepRunner

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
        if status in ("breach", "no_data", "error"):
            # The step's revert: read_new_pct = 0. Where the trigger already rolled back it finds the flag
            # at 0 and only records the step as reverted; where the trigger could not write the flag
            # (database down?) this is the second try.
            try:
                with db.connection(cfg.connections.legacy) as conn:
                    runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor,
                                        context={**ctx, "reason": f"automatic read-rollout rollback: {reason}"})
                    runner.revert([rollout_flag(cfg, self.pct)])
                rolled_back = True
            except Exception as exc:  # noqa: BLE001 - reported in the page and the failure
                if not rolled_back:
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
        super().__init__(**wait_retries(kwargs.get("task_id"), kwargs))
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
        from migration_engine.control import current_flags
        from migration_engine.cutover.steps import keep_old_sync_end_step
        from migration_engine.steps import StepRunner

        cfg = config()
        ti = context["ti"]
        with db.connection(cfg.connections.legacy) as conn:
            flags = current_flags(conn, cfg.control_schema)
            if not flags.get("write_to_new"):
                self.log.warning("write_to_new is off (a rollback happened): leaving keep_old_sync as it is")
                return {"keep_old_sync": "left as is", "write_to_new": False}
            runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=f"airflow:{ti.dag_id}",
                                context={"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id})
            (result,) = runner.apply([keep_old_sync_end_step(cfg)])
        return {"keep_old_sync": "turned off" if result.changed else "already off"}


class RecoveryWatchOperator(BaseOperator):
    """Verify recovery within ``cutover.rollback_verify_window`` of the flag change (task ``flag_task_id``).

    The baseline is the DAG param ``baseline_pct`` if given, else the old path's error rate over
    ``cutover.baseline_window`` before the rollback. Not recovered in time -> critical page and the
    task fails with the last figures (the flag stays rolled back).

    Retried (``retries`` >= 1) after a spurious failure, the watch keeps its deadline (it is derived
    from the flag change, not from the try) and its baseline (read back from the first try's
    ``wait.started`` record, so a retry does not re-measure it over a window the rollback already
    moved past).
    """

    template_fields = ("baseline_pct",)
    ui_color = "#d6eaf8"

    def __init__(self, *, scenario: str, flag_task_id: str, baseline_pct: Any = None, **kwargs: Any) -> None:
        super().__init__(**wait_retries(kwargs.get("task_id"), kwargs))
        self.scenario = scenario
        self.flag_task_id = flag_task_id
        self.baseline_pct = baseline_pct

    def execute(self, context) -> None:
        from migration_engine import control, db
        from migration_engine.airflow.dags import config
        from migration_engine.airflow.triggers import RecoveryTrigger
        from migration_engine.rollback.health import baseline_before
        from migration_engine.rollback.simple import SCENARIOS

        cfg = config()
        co = cfg.cutover
        ti = context["ti"]
        applied = ti.xcom_pull(task_ids=self.flag_task_id) or {}
        if "changed_at" not in applied:
            raise AirflowFailException(f"no result from {self.flag_task_id!r}; it must run first")
        changed_at = datetime.fromisoformat(applied["changed_at"])
        mode = SCENARIOS[self.scenario]["mode"]
        given = self.baseline_pct
        actor = f"airflow:{ti.dag_id}"
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
            wait = resume(conn, cfg.control_schema, self, ti, kind="recovery_watch", actor=actor,
                          fresh={"scenario": self.scenario, "changed_at": applied["changed_at"],
                                 "baseline_pct": baseline, "figures": figures},
                          reason=f"rollback {self.scenario}: watching for recovery")
            if wait.resumed:  # the first try's baseline, so every try judges against the same figure
                baseline, figures = float(wait.details["baseline_pct"]), dict(wait.details["figures"])
            else:
                control.audit(conn, cfg.control_schema, actor=actor,
                              action=f"rollback.{self.scenario}.verify_started",
                              target=SCENARIOS[self.scenario]["flag"],
                              details={"dag_id": ti.dag_id, "run_id": ti.run_id, "baseline_pct": baseline, **figures},
                              reason="watching for recovery")
        deadline = changed_at + co.rollback_verify_window
        self.log.info("baseline %.3f%% (%s); recovered needed by %s", baseline, figures["baseline_source"],
                      deadline.isoformat(timespec="seconds"))
        self.defer(
            trigger=RecoveryTrigger(
                conn_id=cfg.connections.legacy, schema=cfg.control_schema, entities=list(cfg.entities), mode=mode,
                deadline=deadline.isoformat(), interval_s=co.check_interval.total_seconds(),
                # a retry after the propagation time does not wait it again
                propagation_s=max(0.0, (changed_at + co.flag_propagation - datetime.now(UTC)).total_seconds()),
                baseline_pct=baseline,
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


def rolled_back_event(conn, schema: str, ti, pct: int, *, since: str) -> dict[str, Any] | None:
    """The trigger event of a rollback the hold's trigger already made (ledger), or None."""
    from migration_engine import sqlfiles

    with conn.cursor() as cur:
        sqlfiles.run(cur, "cutover/hold_rolled_back.sql", {"schema": schema},
                     {"target": f"read_new_pct={pct}", "run_id": ti.run_id, "task_id": ti.task_id, "since": since})
        row = cur.fetchone()
    conn.rollback()
    if row is None:
        return None
    details, reason = row
    return {"status": details.get("decision") or "breach", "reason": reason.removeprefix("automatic read-rollout "
            "rollback: "), "figures": details.get("figures") or {}, "rolled_back": True,
            "rolled_back_at": details.get("rolled_back_at"), "resumed": True}
