"""What every DAG shares: default_args with the Slack failure callback, tags, owners, config.

DAG files import only this module and `airflow.sdk` at top level; everything heavy (psycopg2 work,
GX, slack_sdk) is imported inside tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from migration_engine.config import MigrationConfig, load_config

OWNER = "migration"
START_DATE = datetime(2026, 1, 1)


def failure_callback(context) -> None:
    """Task-level failure callback (a DAG-level notifier crashes under dag.test in 3.3)."""
    from migration_engine.alerts import task_failure_callback

    task_failure_callback(context)


def success_callback(context) -> None:
    """Resolves the task's open failure alert in Slack (a "resolved" reply in its thread)."""
    from migration_engine.alerts import task_success_callback

    task_success_callback(context)


def default_args(**overrides) -> dict:
    args = {
        "owner": OWNER,
        "retries": 0,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": failure_callback,
        "on_success_callback": success_callback,
    }
    args.update(overrides)
    return args


def tags(*extra: str) -> list[str]:
    return ["zero-downtime-migration", *extra]


def run_on_legacy(fn, *refusals: type[Exception]):
    """Run ``fn(conn, cfg, actor=, context=)`` on the legacy DB as the current task.

    A refusal (the migration is not in a state where this step applies) fails the task without
    retries, with the refusal's message shown in the UI.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from migration_engine import db
    from migration_engine.cutover.flags import task_context

    cfg = config()
    actor, ctx = task_context()
    try:
        with db.connection(cfg.connections.legacy) as conn:
            return fn(conn, cfg, actor=actor, context=ctx)
    except refusals as exc:
        raise AirflowFailException(str(exc)) from exc


def one_shot_gate(evaluate, refused: str) -> dict:
    """Evaluate ``evaluate(conn, cfg, now) -> GateResult`` once on the legacy DB, record it in
    gate_results, and fail the task (no retries) with ``"<refused>: <reason>"`` unless it passed."""
    from datetime import UTC, datetime

    from airflow.sdk.exceptions import AirflowFailException

    from migration_engine import control, db
    from migration_engine.cutover.flags import task_context

    cfg = config()
    _actor, ctx = task_context()
    with db.connection(cfg.connections.legacy) as conn:
        result = evaluate(conn, cfg, datetime.now(UTC))
        conn.rollback()  # the evaluation only read; record the result in a fresh transaction
        control.record_gate_result(conn, cfg.control_schema, gate=result.gate, status=result.status,
                                   figures=result.figures, reason=result.reason, dag_id=ctx["dag_id"],
                                   run_id=ctx["run_id"])
    if not result.passed:
        raise AirflowFailException(f"{refused}: {result.reason}")
    return result.as_dict()


def config() -> MigrationConfig:
    """The migration config (cached by file mtime, cheap at DAG-parse time)."""
    return load_config()
