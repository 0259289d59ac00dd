"""migration_phase3_repair: fix what the last consistency run found, then re-diff exactly those keys.

Run it after `migration_phase3_data_migration` (or a full run) failed on row differences. For the keys
that run stored, per entity:

- **changed** rows are re-copied from the old row (the backfill's mapping; a strictly newer new row wins),
- **missing** rows are inserted,
- **ghosts** - new rows whose old row is gone, or out of scope (SOLD in the old table, still active in
  the new one) - are deleted.

Each key is decided again while its new row is locked, from the old row as it is then; every batch is one
transaction with its audit-ledger entry (`consistency_repair`: keys, before-images of every overwritten or
deleted row). Deleting more than `consistency.repair_max_deletes` rows waits for the approval point
`repair_deletes`. The repair's verify re-diffs exactly those keys; re-run phase 3 for the verdict.

    choose_mode -> show_plan                                    (dry run: keys and exact SQL)
                -> assess -> route -> (approve_deletes) -> repair

**Params**: `dry_run`, `consistency_run` (the run to repair; default the last finished one).
See docs/phase3-4-consistency.md ("Repair").
"""

from __future__ import annotations

from airflow.sdk import Param, task

from migration_engine.airflow.approvals import approval
from migration_engine.airflow.consistency import repair_apply, repair_assess, repair_plan, repair_route
from migration_engine.airflow.dags import migration_dag
from migration_engine.airflow.dry_run import choose


@migration_dag(
    "migration_phase3_repair",
    doc_md=__doc__,
    tags_=("phase3", "consistency", "repair"),
    params={
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="List the keys per action and the exact SQL; change nothing."),
        "consistency_run": Param(None, type=["null", "integer"], minimum=1, title="Consistency run",
                                 description="Id of the consistency run to repair (default: the last finished)."),
    },
)
def migration_phase3_repair():
    @task.branch
    def choose_mode() -> str:
        return choose("show_plan", "assess")

    @task
    def show_plan() -> dict:
        return repair_plan()

    @task
    def assess() -> dict:
        return repair_assess()

    @task.branch
    def route(summary: dict) -> str:
        return repair_route(summary)

    @task(trigger_rule="none_failed_min_one_success")
    def repair(summary: dict) -> dict:
        return repair_apply(summary)

    approve = approval(
        "approve_deletes", "Let the repair delete new rows?",
        "The repair of consistency run {{ ti.xcom_pull(task_ids='assess')['run_pk'] }} would delete "
        "{{ ti.xcom_pull(task_ids='assess')['deletes'] }} rows of the new tables (more than "
        "consistency.repair_max_deletes): ghosts whose old row is gone or out of scope. Their before-images go "
        "to the audit ledger. Reject to change nothing.",
        approval_point="repair_deletes", figures_from=["assess"])

    mode = choose_mode()
    mode >> show_plan()
    summary = assess()
    mode >> summary
    routed = route(summary)
    done = repair(summary)
    routed >> approve >> done
    routed >> done


migration_phase3_repair()
