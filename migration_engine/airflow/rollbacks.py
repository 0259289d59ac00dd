"""The rollback DAGs' task bodies: the engine's steps run as the current task, plus the Slack message.

Why here: telling the channel is Airflow glue (task ids, run ids, the alert's dedup key), the
changes themselves are steps in ``migration_engine.rollback``. Refusals fail the task without
retries (``outcome``); a dry run is a separate plan task (``migration_engine.airflow.dry_run``).
"""

from __future__ import annotations

from typing import Any

from migration_engine.airflow.context import params, task_context
from migration_engine.airflow.dags import config
from migration_engine.airflow.tasks import on_legacy, outcome, run_steps


def _alert(severity: str, title: str, text: str, figures: dict[str, Any]) -> None:
    from migration_engine.alerts import send_alert

    _actor, ctx = task_context()
    send_alert(severity, title, text, figures=figures, dag_id=ctx["dag_id"], task_id=ctx["task_id"],
               run_id=ctx["run_id"], cfg=config())


# --- scenarios 1 and 2 ---------------------------------------------------------------------
def flag_rollback(scenario: str) -> dict[str, Any]:
    """Apply the scenario's flag step, then tell the channel (warning) what changed."""
    from migration_engine.rollback import simple

    reason = params()["reason"]
    result = on_legacy(lambda conn, cfg, actor, context: simple.apply(conn, cfg, scenario, actor=actor,
                                                                      context=context, reason=reason))
    title, text, figures = simple.alert_text(scenario, result, reason)
    _alert("warning", title, text, figures)
    return result


def flag_rollback_plan(scenario: str) -> dict[str, Any]:
    from migration_engine.rollback import simple

    reason = params()["reason"]
    return run_steps(lambda cfg: [simple.flag_step(cfg, scenario, reason)], dry=True)


# --- scenario 3 ----------------------------------------------------------------------------
def rollback3_preflight() -> dict[str, Any]:
    from migration_engine.rollback import writes

    actor, ctx = task_context()
    with outcome():
        plan = writes.preflight(config(), actor=actor, context=ctx)
    return writes.preflight_summary(plan)


def rollback3_plan() -> dict[str, Any]:
    """Dry run: what every step would send now, read-only (no pre-flight record, no flag, no state)."""
    from migration_engine.rollback import writes

    with outcome():
        return writes.dry_run_plan(config())


def rollback3_step(name: str) -> dict[str, Any]:
    """One step of scenario 3; maintenance on/off page the channel (critical / warning)."""
    from migration_engine.rollback import writes

    actor, ctx = task_context()
    with outcome():
        result = writes.run(name, config(), actor=actor, context=ctx)
    message = writes.ALERTS.get(name)
    if message:
        severity, title, text = message
        _alert(severity, title, text, {k: v for k, v in result.items() if not isinstance(v, dict)})
    return result
