"""migration_rollback_dual_write: rollback scenario 1 (seed "During Dual-Write Phase").

Symptoms: dual-write failures > 5 %, data sync issues. Data impact: none - the old tables are still
authoritative.

1. **disable_dual_write** - `dual_write_enabled = false` (audited with the given reason). Refused if
   writes already moved to the new tables (then use `migration_rollback_writes`).
2. **verify_old_path** - deferred watch: after the application's flag cache
   (`cutover.flag_propagation`), every `cutover.check_interval` until one interval shows the old
   path's reads and writes within `cutover.error_rate_max_increase_points` of the baseline (its error
   rate over `cutover.baseline_window` before the rollback, or the `baseline_pct` param) with
   enough requests, and no dual-write attempted any more. Not within
   `cutover.rollback_verify_window` -> critical page, task fails (the flag stays off).

Re-enable dual-write (phase 2 DAG) only after the fix is validated. See docs/rollbacks.md.

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
                          description="Normal old-path error rate; default: measured before the rollback."),
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the flag change and change nothing."),
}


@migration_dag("migration_rollback_dual_write", doc_md=__doc__, tags_=("rollback", "scenario-1"), params=PARAMS)
def migration_rollback_dual_write():
    @task.branch
    def choose_mode() -> str:
        return choose("show_plan", "disable_dual_write")

    @task
    def show_plan() -> dict:
        return flag_rollback_plan("dual_write")

    @task
    def disable_dual_write() -> dict:
        return flag_rollback("dual_write")

    mode = choose_mode()
    mode >> show_plan()
    watch = RecoveryWatchOperator(task_id="verify_old_path", scenario="dual_write", flag_task_id="disable_dual_write",
                                  baseline_pct="{{ params.baseline_pct }}")
    mode >> disable_dual_write() >> watch


migration_rollback_dual_write()
