"""migration_rollback_writes: rollback scenario 3 (seed "After Write Cutover", CRITICAL, downtime).

Symptoms: data loss, corruption, payment failures after writes moved to the new tables. Every
action is a step run by `StepRunner`, audited and recorded in `migration_control.step_state`
(`rollback3.cutover-<ledger id>.<action>`, each action's result in `rollback3.cutover-<ledger id>`);
if a step fails, maintenance mode stays on and re-running the DAG resumes where it stopped.

1. **preflight** (read-only) - the write cutover to undo (from the ledger), the latest verified
   backup taken before it (file intact), old tables present, reverse mapping valid and every
   new-table value mappable, `pg_restore` available.
2. **approve_rollback** - human approval (gate `rollback_scenario_3`) showing the plan.
3. **maintenance_on** - `maintenance_mode = true` (the application refuses writes), wait for its
   flag cache, then for the old and new tables to show no writes.
4. **restore_backup** - the pre-cutover dump re-verified and its old tables restored into a side
   database (`cutover.rollback_side_database`, default `<legacy db>_pre_cutover`), row counts
   checked against the manifest.
5. **forward_sync** - every row created or changed in the new tables since the cutover is written
   back into the old tables (reverse column mapping, e.g. `active -> ACTIVE`); rows created after
   the cutover get a new old-table id, set as their `legacy_id` in the new table; rows deleted in the
   new tables are deleted or marked (listings: `status = ARCHIVED`) in the old ones.
6. **verify** - both ways: no new row missing or different in the old tables, no old in-scope row
   without a live new row, in-scope counts and checksums equal; every row of the pre-cutover backup
   still present unless the rollback deleted it; counts recorded.
7. **writes_to_old** - `keep_old_sync = false`, `write_to_new = false`, `read_new_pct = 0`.
8. **maintenance_off** - `maintenance_mode = false`.

See docs/rollbacks.md.

**dry_run** (Param) runs the pre-flight without recording it and prints every step's plan (the flag
UPDATEs, the side-database SQL and pg_restore commands, how many rows the sync would write, the
DELETE/UPDATE for rows deleted in the new tables with their keys); it
changes nothing and asks no approval.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, task

from migration_engine.airflow.approvals import approval
from migration_engine.airflow.dags import migration_dag
from migration_engine.airflow.dry_run import choose
from migration_engine.airflow.rollbacks import rollback3_plan, rollback3_preflight, rollback3_step

STEPS = ["maintenance_on", "restore_backup", "forward_sync", "verify", "writes_to_old", "maintenance_off"]

PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print every step's plan (read-only pre-flight) and change nothing."),
}


def _step(name: str):
    @task(task_id=name)
    def run() -> dict:
        return rollback3_step(name)

    return run()


@migration_dag("migration_rollback_writes", doc_md=__doc__, tags_=("rollback", "scenario-3", "critical"),
               params=PARAMS)
def migration_rollback_writes():
    @task.branch
    def choose_mode() -> str:
        return choose("show_plan", "preflight")

    @task
    def show_plan() -> dict:
        return rollback3_plan()

    @task
    def preflight() -> dict:
        return rollback3_preflight()

    approve = approval(
        "approve_rollback", "Roll back the write cutover? (maintenance mode: writes refused meanwhile)",
        "Approving turns maintenance mode on, restores the pre-cutover backup into a side database, writes every "
        "row created or changed in the new tables since the cutover back into the old tables, deletes or marks "
        "(entities.<name>.rollback_deletes) the old rows deleted in the new tables (deleted_in_new below), "
        "verifies both ways, and moves reads and writes back to the old tables.",
        approval_point="rollback_scenario_3", figures_from=["preflight"])

    mode = choose_mode()
    mode >> show_plan()
    chain(mode, preflight(), approve, *[_step(name) for name in STEPS])


migration_rollback_writes()
