"""migration_phase1_schema_prep: seed Phase 1 (schema preparation), done lock-safely and idempotently.

What it does, in order (each its own task), on the legacy database, from `schema_changes` in the
migration config. Every step task applies its group's steps and then verifies them
(`StepRunner`: plan / apply / verify, state in `migration_control.step_state`):

1. **prepare** - every table named exists; the control schema exists.
2. **step_1_1_add_columns** - `ADD COLUMN IF NOT EXISTS` (constant defaults are catalog-only);
   verified from information_schema (presence, type, default).
3. **step_1_2_indexes** - `CREATE INDEX CONCURRENTLY` outside a transaction; an INVALID leftover of
   an interrupted build is dropped concurrently and rebuilt; verified by `pg_index.indisvalid` and
   the definition.
4. **step_1_3_defaults_constraints** - default, batched backfill of NULLs,
   `CHECK (col IS NOT NULL) NOT VALID` + `VALIDATE` + `SET NOT NULL` (no scan under the exclusive
   lock), value checks `NOT VALID` + `VALIDATE`; verified by zero NULLs, nullability and
   `pg_constraint.convalidated`.
5. **finish** - audit-ledger entry.

Every statement runs with `ddl.lock_timeout` / `ddl.statement_timeout`; a lock timeout is retried
with jittered backoff (`ddl.max_lock_retries`), so a long transaction on a table makes this DAG
wait politely instead of queueing the application behind it. Re-running is safe at any point:
steps read the catalog and skip what is done.

**Params**: `dry_run` (default false) logs the exact SQL each step would send and changes
nothing. **Undo**: the `migration_phase1_rollback` DAG (behind an approval). See docs/phase1.md.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, task

from migration_engine import phase1
from migration_engine.airflow.dags import migration_dag
from migration_engine.airflow.tasks import on_legacy, run_steps

PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the exact SQL plan of every step and change nothing."),
}


@migration_dag("migration_phase1_schema_prep", doc_md=__doc__, tags_=("phase1", "schema"), params=PARAMS)
def migration_phase1_schema_prep():
    @task
    def prepare() -> dict:
        return on_legacy(phase1.prepare, dry_run_aware=True)

    @task
    def step_1_1_add_columns() -> dict:
        return run_steps(phase1.columns_steps)

    @task
    def step_1_2_indexes() -> dict:
        return run_steps(phase1.index_steps)

    @task
    def step_1_3_defaults_constraints() -> dict:
        return run_steps(phase1.constraint_steps)

    @task
    def finish() -> dict:
        return on_legacy(phase1.finish, dry_run_aware=True)

    chain(prepare(), step_1_1_add_columns(), step_1_2_indexes(), step_1_3_defaults_constraints(), finish())


migration_phase1_schema_prep()
