"""A tiny DAG for tests/unit/test_alerts.py: one task raises; the failure callback comes from default_args.

Loaded as an extra DAG bundle by the test (dag.test() needs the DAG file inside a configured bundle).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from migration_engine.airflow.callbacks import task_failure_callback

with DAG(
    dag_id="alerts_failure_probe",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    default_args={"on_failure_callback": task_failure_callback, "retries": 0},
    tags=["test"],
):

    @task
    def explode():
        raise RuntimeError("kaboom from the alerts probe")

    explode()
