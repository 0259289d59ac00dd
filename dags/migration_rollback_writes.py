"""migration_rollback_writes: rollback scenario 3 (seed "After Write Cutover", CRITICAL, downtime).

Symptoms: data loss, corruption, payment failures after writes moved to the new tables. Every
step is audited and recorded in `migration_control.step_state` (`rollback3.cutover-<ledger id>`);
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
   the cutover get a new old-table id, set as their `legacy_id` in the new table.
6. **verify** - no difference left between new and old (content digests equal), every row of the
   pre-cutover backup still present, counts recorded.
7. **writes_to_old** - `keep_old_sync = false`, `write_to_new = false`, `read_new_pct = 0`.
8. **maintenance_off** - `maintenance_mode = false`.

See docs/rollbacks.md.
"""

from __future__ import annotations

from airflow.sdk import chain, dag, task

from migration_engine.airflow.approvals import approval
from migration_engine.airflow.dags import START_DATE, config, default_args, tags

STEPS = ["maintenance_on", "restore_backup", "forward_sync", "verify", "writes_to_old", "maintenance_off"]


def _step(name: str):
    @task(task_id=name)
    def run() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from migration_engine.airflow.context import task_context
        from migration_engine.rollback import writes

        cfg = config()
        actor, ctx = task_context()
        try:
            result = getattr(writes, name)(cfg, actor=actor, context=ctx)
        except writes.RollbackWritesRefused as exc:
            raise AirflowFailException(str(exc)) from exc
        if name in ("maintenance_on", "maintenance_off"):
            from migration_engine.alerts import send_alert

            on = name == "maintenance_on"
            send_alert("critical" if on else "warning",
                       "Rollback scenario 3: maintenance mode ON - writes refused" if on else
                       "Rollback scenario 3 complete: writes are back on the old tables",
                       "The old tables are being brought up to date from the new ones." if on else
                       "maintenance_mode is off; reads and writes use the old tables again.",
                       figures={k: v for k, v in result.items() if not isinstance(v, dict)},
                       dag_id=ctx["dag_id"], task_id=ctx["task_id"], run_id=ctx["run_id"], cfg=cfg)
        return result

    return run()


@dag(
    dag_id="migration_rollback_writes",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=tags("rollback", "scenario-3", "critical"),
    doc_md=__doc__,
)
def migration_rollback_writes():
    @task
    def preflight() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from migration_engine.airflow.context import task_context
        from migration_engine.rollback import writes

        cfg = config()
        actor, ctx = task_context()
        try:
            plan = writes.preflight(cfg, actor=actor, context=ctx)
        except writes.RollbackWritesRefused as exc:
            raise AirflowFailException(str(exc)) from exc
        return {"cutover_at": plan["cutover_at"], "backup": plan["backup"]["file"],
                "backup_taken_at": plan["backup"]["snapshot_taken_at"], "side_database": plan["side_database"],
                "resuming": plan["resuming"], "already_done": plan["done"],
                "entities": {n: {k: v for k, v in e.items() if k != "old_key_sequence"}
                             for n, e in plan["entities"].items()}}

    approve = approval(
        "approve_rollback", "Roll back the write cutover? (maintenance mode: writes refused meanwhile)",
        "Approving turns maintenance mode on, restores the pre-cutover backup into a side database, writes every "
        "row created or changed in the new tables since the cutover back into the old tables, verifies, and moves "
        "reads and writes back to the old tables.",
        approval_point="rollback_scenario_3", figures_from=["preflight"])

    chain(preflight(), approve, *[_step(name) for name in STEPS])


migration_rollback_writes()
