"""migration_phase1_rollback: return the schema to what it was before phase 1, behind an approval.

Tasks, in order:

1. **plan_rollback** - the exact SQL of the rollback (reverse order: 1.3, 1.2, 1.1), built from what
   `migration_phase1_schema_prep` recorded before it first changed each object
   (`migration_control.step_state`): only what phase 1 created is removed; anything that existed
   before is kept. It refuses when an added column holds data the phase did not write (the
   application started using it) unless `allow_data_loss` is set.
   On a dry run this plan (logged verbatim) is the whole run.
2. **proceed** - stops here on a dry run.
3. **approve_rollback** - a human approval (Approve / Reject; gate `phase1_rollback`) showing the
   plan, posted to Slack with buttons and shown in Required Actions. Request and decision go to the
   audit ledger. Reject, or no answer within
   `approvals.response_timeout`, skips the rest: nothing changes.
4. **revert_1_3_defaults_constraints**, **revert_1_2_indexes**, **revert_1_1_columns** - each
   reverts its group's steps (`StepRunner` revert, last-applied first): drop the CHECK constraint,
   NOT NULL and default; drop the indexes CONCURRENTLY; drop the added columns. Same lock_timeout +
   retry discipline as the forward DAG.
5. **validate_rollback** - every object is back to its recorded pre-phase-1 state; audited.

**Params**: `dry_run` (print the plan only), `allow_data_loss` (drop columns even if they hold
application data). See docs/phase1.md.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, task

from migration_engine import phase1
from migration_engine.airflow.approvals import approval as approval_task
from migration_engine.airflow.dags import migration_dag
from migration_engine.airflow.dry_run import not_dry_run
from migration_engine.airflow.tasks import on_legacy, run_steps

GATE = "phase1_rollback"
PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the exact rollback SQL and stop before the approval."),
    "allow_data_loss": Param(False, type="boolean", title="Allow data loss",
                             description="Drop added columns even when they hold values phase 1 did not write."),
}


@migration_dag("migration_phase1_rollback", doc_md=__doc__, tags_=("phase1", "rollback"), params=PARAMS)
def migration_phase1_rollback():
    @task
    def plan_rollback() -> dict:
        return on_legacy(phase1.rollback_summary, dry_run_aware=True, param_names=("allow_data_loss",))

    @task.short_circuit
    def proceed() -> bool:
        return not_dry_run()

    # Airflow's ApprovalOperator + audit-ledger entries + the Slack request with buttons; timeout
    # (approvals.response_timeout) takes the safe default Reject and pages on-call.
    approve = approval_task(
        "approve_rollback",
        subject="Roll back the phase-1 schema changes?",
        body=(
            "Approving runs this SQL on the legacy database (indexes are dropped CONCURRENTLY, every "
            "statement under lock_timeout with retry). Reject, or no answer, changes nothing.\n\n"
            "```sql\n{{ ti.xcom_pull(task_ids='plan_rollback')['plan'] }}\n```"
        ),
        approval_point=GATE,
        figures={"data at risk": "{{ ti.xcom_pull(task_ids='plan_rollback')['data_at_risk'] or 'none' }}"},
    )

    @task
    def revert_1_3_defaults_constraints() -> dict:
        return run_steps(phase1.constraint_revert_steps, action="revert")

    @task
    def revert_1_2_indexes() -> dict:
        return run_steps(phase1.index_revert_steps, action="revert")

    @task
    def revert_1_1_columns() -> dict:
        return run_steps(phase1.columns_revert_steps, action="revert")

    @task
    def validate_rollback() -> dict:
        return on_legacy(phase1.verify_rollback)

    chain(
        plan_rollback(), proceed(), approve,
        revert_1_3_defaults_constraints(), revert_1_2_indexes(), revert_1_1_columns(),
        validate_rollback(),
    )


migration_phase1_rollback()
