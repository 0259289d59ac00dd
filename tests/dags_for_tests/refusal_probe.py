"""A tiny DAG for tests/unit/test_refusals.py: one task refuses through ``on_legacy`` (as a phase task
does when the migration is not in a state where its step applies); the failure callback pages Slack.

Loaded as an extra DAG bundle by the test (dag.test() needs the DAG file inside a configured bundle).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from migration_engine.airflow.callbacks import task_failure_callback

with DAG(
    dag_id="refusal_probe",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"on_failure_callback": task_failure_callback, "retries": 3},
    params={"dry_run": Param(False, type="boolean")},
    tags=["test"],
):

    @task
    def refuse():
        from migration_engine.airflow.tasks import on_legacy
        from migration_engine.errors import Refused

        def fn(conn, cfg, **_):
            raise Refused("writes already moved to the new database: run migration_rollback_writes first")

        return on_legacy(fn)

    refuse()
