"""What every DAG shares: one header (schedule, start date, catch-up, callbacks, deadlines, tags, owner)
and config.

DAG files import this layer and ``airflow.sdk`` only; everything heavy (psycopg2 work, GX,
slack_sdk) is imported inside tasks, so parsing stays cheap and touches no network.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference, dag

from migration_engine.config import MigrationConfig, load_config

OWNER = "migration"
START_DATE = datetime(2026, 1, 1)


def failure_callback(context) -> None:
    """Task-level failure callback (a DAG-level notifier crashes under dag.test in 3.3)."""
    from migration_engine.airflow.callbacks import task_failure_callback

    task_failure_callback(context)


def success_callback(context) -> None:
    """Resolves the task's open failure alert in Slack (a "resolved" reply in its thread)."""
    from migration_engine.airflow.callbacks import task_success_callback

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


def config() -> MigrationConfig:
    """The migration config (cached by file mtime, cheap at DAG-parse time)."""
    return load_config()


def deadline_alerts(dag_id: str, cfg: MigrationConfig | None = None) -> list[DeadlineAlert]:
    """The Deadline Alerts of a migration DAG's runs (config ``deadlines``; docs/runbook.md "Deadlines").

    Both are measured from when the run was queued and fired by the scheduler; the triggerer runs
    the callback (``AsyncCallback``: no worker slot, works while every worker is busy or hung):

    * ``watch`` (at once): watches the run while it lives - approval reminders before their
      response timeout, and the overdue page resolved when the run ends;
    * ``overdue`` (``deadlines.consistency_hourly`` for the hourly DAG, else
      ``deadlines.phase_runs``): a critical page naming the run and what to do next; none when
      the deadline is null. The scheduler drops it when the run ends first.
    """
    from migration_engine.airflow.callbacks import deadline_missed, run_watch

    cfg = cfg or config()
    found = [DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(0), name="watch",
                           callback=AsyncCallback(run_watch, kwargs={
                               "poll_seconds": cfg.deadlines.reminder_poll.total_seconds()}))]
    limit = cfg.deadlines.run_deadline(dag_id)
    if limit is not None:
        found.append(DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=limit, name="overdue",
                                   callback=AsyncCallback(deadline_missed, kwargs={
                                       "limit_seconds": limit.total_seconds()})))
    return found


def migration_dag(dag_id: str, *, doc_md: str | None, tags_: tuple[str, ...] = (), schedule: Any = None,
                  max_active_runs: int = 1, default_args_: dict | None = None, **kwargs: Any):
    """``@dag`` with the project's header: manual by default, no catch-up, one run at a time, and
    the run's Deadline Alerts (:func:`deadline_alerts`)."""
    kwargs.setdefault("deadline", deadline_alerts(dag_id))
    return dag(dag_id=dag_id, schedule=schedule, start_date=START_DATE, catchup=False,
               max_active_runs=max_active_runs, default_args=default_args(**(default_args_ or {})),
               tags=tags(*tags_), doc_md=doc_md, **kwargs)
