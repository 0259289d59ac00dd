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

**dry_run** (Param) prints the flag change (the exact UPDATE and its ledger entry) and changes
nothing; the watch is skipped.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from migration_engine.airflow.dags import migration_dag
from migration_engine.airflow.dry_run import choose
from migration_engine.airflow.rollbacks import flag_rollback, flag_rollback_plan
from migration_engine.rollback.operators import RecoveryWatchOperator

PARAMS = {
    "reason": Param("emergency rollback (no reason given)", type="string", minLength=1, title="Reason",
                    description="Symptoms / why (goes to the audit ledger)."),
    "baseline_pct": Param(None, type=["null", "number"], minimum=0, maximum=100, title="Baseline error rate %",
                          description="Normal read error rate; default: the old path's, measured before the rollback."),
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the flag change and change nothing."),
}


@migration_dag("migration_rollback_reads", doc_md=__doc__, tags_=("rollback", "scenario-2"), params=PARAMS)
def migration_rollback_reads():
    @task.branch
    def choose_mode() -> str:
        return choose("show_plan", "reads_to_old")

    @task
    def show_plan() -> dict:
        return flag_rollback_plan("reads")

    @task
    def reads_to_old() -> dict:
        return flag_rollback("reads")

    mode = choose_mode()
    mode >> show_plan()
    watch = RecoveryWatchOperator(task_id="verify_error_rate", scenario="reads", flag_task_id="reads_to_old",
                                  baseline_pct="{{ params.baseline_pct }}")
    mode >> reads_to_old() >> watch


migration_rollback_reads()
