"""migration_phase1_schema_prep: seed Phase 1 (schema preparation), done lock-safely and idempotently.

What it does, in order (each its own task), on the legacy database, from `schema_changes` in the
migration config:

1. **prepare** - every table named exists; the control schema exists.
2. **step_1_1_add_columns** / **validate_1_1_columns** - `ADD COLUMN IF NOT EXISTS` (constant
   defaults are catalog-only); validation reads information_schema (presence, type, default).
3. **step_1_2_indexes** / **validate_1_2_indexes** - `CREATE INDEX CONCURRENTLY` outside a
   transaction; an INVALID leftover of an interrupted build is dropped concurrently and rebuilt;
   validation checks `pg_index.indisvalid` and the definition.
4. **step_1_3_defaults_constraints** / **validate_1_3_constraints** - default, batched backfill of
   NULLs, `CHECK (col IS NOT NULL) NOT VALID` + `VALIDATE` + `SET NOT NULL` (no scan under the
   exclusive lock), value checks `NOT VALID` + `VALIDATE`; validation checks zero NULLs,
   nullability and `pg_constraint.convalidated`.
5. **finish** - audit-ledger entry.

Every statement runs with `ddl.lock_timeout` / `ddl.statement_timeout`; a lock timeout is retried
with jittered backoff (`ddl.max_lock_retries`), so a long transaction on a table makes this DAG
wait politely instead of queueing the application behind it. Re-running is safe at any point:
steps read the catalog and skip what is done; run state is in `migration_control.step_state`.

**Params**: `dry_run` (default false) prints the exact SQL each step would send and changes
nothing. **Undo**: the `migration_phase1_rollback` DAG (behind an approval). See docs/phase1.md.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, dag, task

from migration_engine.airflow.dags import START_DATE, config, default_args, tags

PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the exact SQL plan of every step and change nothing."),
}


@dag(
    dag_id="migration_phase1_schema_prep",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=tags("phase1", "schema"),
    params=PARAMS,
    doc_md=__doc__,
)
def migration_phase1_schema_prep():
    @task
    def prepare() -> dict:
        from migration_engine import phase1

        dry_run, _actor, _context = phase1.task_context()
        return phase1.prepare(config(), dry_run=dry_run)

    def step(group: str, task_id: str):
        @task(task_id=task_id)
        def apply() -> dict:
            from migration_engine import phase1

            dry_run, actor, context = phase1.task_context()
            return phase1.apply_group(config(), group, dry_run=dry_run, actor=actor, context=context)

        return apply()

    def validation(group: str, task_id: str):
        @task(task_id=task_id)
        def validate() -> dict:
            from migration_engine import phase1

            dry_run, actor, context = phase1.task_context()
            if dry_run:
                print(f"dry run: nothing was applied, so step {group} is not validated")
                return {"group": group, "dry_run": True}
            return phase1.verify_group(config(), group, actor=actor, context=context)

        return validate()

    @task
    def finish() -> dict:
        from migration_engine import phase1

        dry_run, actor, context = phase1.task_context()
        if dry_run:
            return {"dry_run": True}
        return phase1.finish(config(), actor=actor, context=context)

    chain(
        prepare(),
        step("1.1", "step_1_1_add_columns"), validation("1.1", "validate_1_1_columns"),
        step("1.2", "step_1_2_indexes"), validation("1.2", "validate_1_2_indexes"),
        step("1.3", "step_1_3_defaults_constraints"), validation("1.3", "validate_1_3_constraints"),
        finish(),
    )


migration_phase1_schema_prep()
