"""migration_setup: validate the config, reach both databases, create the control schema.

Run it first (and after editing include/migration.yaml). Safe to re-run: it changes nothing that
already exists.
"""

from __future__ import annotations

from airflow.sdk import dag, task

from migration_engine.airflow.dags import START_DATE, config, default_args, tags


@dag(
    dag_id="migration_setup",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=tags("setup"),
    doc_md=__doc__,
)
def migration_setup():
    @task
    def check_connections() -> dict:
        from migration_engine.setup_tasks import check_connections

        return check_connections(config())

    @task
    def check_tables() -> list:
        from migration_engine.setup_tasks import check_tables

        return check_tables(config())

    @task
    def create_control_schema() -> dict:
        from migration_engine.setup_tasks import create_control_schema

        return create_control_schema(config())

    check_connections() >> check_tables() >> create_control_schema()


migration_setup()
