"""migration_rollback_reads: rollback scenario 2 (seed "After Read Cutover").

Symptoms: error-rate spike, missing data, slow reads after reads moved to the new tables. Data
impact: none - writes still go to the old tables (dual-written to the new ones).

1. **reads_to_old** - `read_new_pct = 0` (audited with the given reason). Refused once writes
   moved to the new tables (the old tables would be stale: use `migration_rollback_writes`).
2. **verify_error_rate** - deferred watch: after the application's flag cache
   (`cutover.flag_propagation`), every `cutover.check_interval` until one interval shows all reads
   within `cutover.error_rate_max_increase_points` of the baseline (the old path's error rate over
   `cutover.baseline_window` before the rollback, or the `baseline_pct` param) with enough
   requests and none served from the new tables. Not within `cutover.rollback_verify_window` ->
   critical page, task fails (reads stay on the old tables).

Then analyse (slow queries? missing indexes? data?), fix, and re-run `migration_phase5_cutover`
(which starts again at the first rollout step). See docs/rollbacks.md.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from migration_engine.airflow.dags import START_DATE, default_args, tags
from migration_engine.airflow.operators import RecoveryWatchOperator

PARAMS = {
    "reason": Param("emergency rollback (no reason given)", type="string", minLength=1, title="Reason",
                    description="Symptoms / why (goes to the audit ledger)."),
    "baseline_pct": Param(None, type=["null", "number"], minimum=0, maximum=100, title="Baseline error rate %",
                          description="Normal read error rate; default: the old path's, measured before the rollback."),
}


@dag(
    dag_id="migration_rollback_reads",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=tags("rollback", "scenario-2"),
    params=PARAMS,
    doc_md=__doc__,
)
def migration_rollback_reads():
    @task
    def reads_to_old(**context) -> dict:
        from migration_engine.rollback.simple import run_task

        return run_task("reads", context["params"]["reason"])

    applied = reads_to_old()
    applied >> RecoveryWatchOperator(task_id="verify_error_rate", scenario="reads", flag_task_id="reads_to_old",
                                     baseline_pct="{{ params.baseline_pct }}")


migration_rollback_reads()
