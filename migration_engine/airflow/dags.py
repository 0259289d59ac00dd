"""What every DAG shares: one header (schedule, start date, catch-up, callbacks, tags, owner) and config.

DAG files import this layer and ``airflow.sdk`` only; everything heavy (psycopg2 work, GX,
slack_sdk) is imported inside tasks, so parsing stays cheap and touches no network.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag

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


def migration_dag(dag_id: str, *, doc_md: str | None, tags_: tuple[str, ...] = (), schedule: Any = None,
                  max_active_runs: int = 1, default_args_: dict | None = None, **kwargs: Any):
    """``@dag`` with the project's header: manual by default, no catch-up, one run at a time."""
    return dag(dag_id=dag_id, schedule=schedule, start_date=START_DATE, catchup=False,
               max_active_runs=max_active_runs, default_args=default_args(**(default_args_ or {})),
               tags=tags(*tags_), doc_md=doc_md, **kwargs)
