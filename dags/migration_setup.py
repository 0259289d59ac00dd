"""migration_setup: validate the config, reach both databases, create or upgrade the control schema.

Run it first (and after editing the migration config or upgrading this package). Safe to re-run: it
changes nothing that already exists.

1. **check_connections** - connects to both databases; a missing or unreachable connection fails
   naming the connection id and the environment variable to set.
2. **preflight** - every table, column and key the config names exists on its database, each
   mapping's types convert without loss, the legacy-id column is UNIQUE, lookups are not empty,
   phase 1 can batch its updates; every problem at once, each with its config path. Reads only:
   nothing has changed when it fails.
3. **create_control_schema** - applies the pending control-schema migrations (numbered SQL files,
   recorded in `schema_version`) under lock_timeout with retry, then verifies every object.

Params: `dry_run` prints the exact SQL of the pending migrations and changes nothing.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from migration_engine.airflow.context import dry_run
from migration_engine.airflow.dags import config, migration_dag


@migration_dag("migration_setup", doc_md=__doc__, tags_=("setup",), params={
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the SQL of the pending control-schema migrations; change nothing."),
})
def migration_setup():
    @task
    def check_connections() -> dict:
        from migration_engine.setup_tasks import check_connections

        return check_connections(config())

    @task
    def preflight() -> dict:
        from migration_engine.setup_tasks import preflight

        return preflight(config())

    @task
    def create_control_schema() -> dict:
        from migration_engine.setup_tasks import create_control_schema

        return create_control_schema(config(), dry_run=dry_run())

    check_connections() >> preflight() >> create_control_schema()


migration_setup()
