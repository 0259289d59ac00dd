"""migration_phase1_rollback: return the schema to what it was before phase 1, behind an approval.

Tasks, in order:

1. **plan_rollback** - the exact SQL of the rollback (reverse order: 1.3, 1.2, 1.1), built from what
   `migration_phase1_schema_prep` recorded before it first changed each object
   (`migration_control.step_state`): only what phase 1 created is removed; anything that existed
   before is kept. It refuses when an added column holds data the phase did not write (the
   application started using it) unless `allow_data_loss` is set.
2. **proceed** - stops here on a dry run.
3. **approve_rollback** - a human approval (Approve / Reject; gate `phase1_rollback`) showing the
   plan, posted to Slack with buttons and shown in Required Actions. Request and decision go to the
   audit ledger. Reject, or no answer within
   `approvals.response_timeout`, skips the rest: nothing changes.
4. **revert_1_3_defaults_constraints**, **revert_1_2_indexes**, **revert_1_1_columns** - drop the
   CHECK constraint, NOT NULL and default; drop the indexes CONCURRENTLY; drop the added columns.
   Same lock_timeout + retry discipline as the forward DAG.
5. **validate_rollback** - every object is back to its recorded pre-phase-1 state; audited.

**Params**: `dry_run` (print the plan only), `allow_data_loss` (drop columns even if they hold
application data). See docs/phase1.md.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, dag, task

from migration_engine.airflow.approvals import approval as approval_task
from migration_engine.airflow.dags import START_DATE, config, default_args, tags

GATE = "phase1_rollback"
PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the exact rollback SQL and stop before the approval."),
    "allow_data_loss": Param(False, type="boolean", title="Allow data loss",
                             description="Drop added columns even when they hold values phase 1 did not write."),
}


@dag(
    dag_id="migration_phase1_rollback",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=tags("phase1", "rollback"),
    params=PARAMS,
    doc_md=__doc__,
)
def migration_phase1_rollback():
    @task
    def plan_rollback(**context) -> dict:
        from migration_engine import phase1

        _dry_run, actor, ctx = phase1.task_context()
        plan = phase1.rollback_plan(config(), allow_data_loss=bool(context["params"]["allow_data_loss"]),
                                    actor=actor, context=ctx)
        return {"plan": plan["plan"], "data_at_risk": plan["data_at_risk"]}

    @task.short_circuit
    def proceed(**context) -> bool:
        if context["params"]["dry_run"]:
            print("dry run: the rollback plan is in the plan_rollback log; stopping before the approval")
            return False
        return True

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

    def revert(group: str, task_id: str):
        @task(task_id=task_id)
        def run() -> dict:
            from migration_engine import phase1

            _dry_run, actor, ctx = phase1.task_context()
            return phase1.revert_group(config(), group, actor=actor, context=ctx)

        return run()

    @task
    def validate_rollback() -> dict:
        from migration_engine import phase1

        _dry_run, actor, ctx = phase1.task_context()
        return phase1.verify_rollback(config(), actor=actor, context=ctx)

    chain(
        plan_rollback(), proceed(), approve,
        revert("1.3", "revert_1_3_defaults_constraints"),
        revert("1.2", "revert_1_2_indexes"),
        revert("1.1", "revert_1_1_columns"),
        validate_rollback(),
    )


migration_phase1_rollback()
