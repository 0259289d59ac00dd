"""migration_phase5_cutover: seed Phase 5 - checklist, gradual read rollout with automatic rollback,
write cutover.

1. **Pre-cutover checklist** (seed 5.1), five deferrable gates, every evaluation recorded in
   `migration_control.gate_results`; each waits up to `cutover.checklist_timeout`, a critical
   status fails at once:
   `check_dual_write` (≥ `cutover.dual_write_min_success_pct` % over `cutover.dual_write_window`),
   `check_consistency` (a passed full consistency run younger than `cutover.consistency_max_age`),
   `check_shadow_reads` (mismatches < `cutover.shadow_mismatch_max_pct` % over
   `cutover.shadow_window`, at least `cutover.shadow_min_reads` reads),
   `check_backup` (a restore-verified `migration_preflight_backup` younger than `cutover.backup_max_age`),
   `check_performance` (new-path read p95 within `cutover.performance_max_p95_increase_pct` % of the old
   path's over `cutover.performance_window`, from the shadow reads' timings).
   `checklist_result` then pages on-call **once** for the run if any check is short, listing each
   one's figure and next step (resolved when they all pass again), and fails the run.
2. **approve_read_cutover** - human approval (gate `pre_cutover`) with the checklist figures.
3. **measure_baseline** - the old path's read error rate over `cutover.baseline_window`.
4. **read_rollout_<pct>pct**, one task per `cutover.rollout` step (10/25/50/100 %): set
   `read_new_pct` (audited), then hold for the step's window (4 h/4 h/8 h/24 h, scaled by
   `time_scale`) deferred, checking every `cutover.check_interval` the new-path read error rate
   against the baseline (the old path in the same interval, or the pre-rollout baseline). More than
   `cutover.error_rate_max_increase_points` above it - or `cutover.max_inconclusive_checks`
   intervals in a row without `cutover.min_requests_per_check` new-path reads (no data is not
   success) - and **in that same check** `read_new_pct` goes back to 0 with the reason (step,
   figures) in the audit ledger; the task then pages on-call (critical) and fails the run with the
   reason.
5. **approve_write_cutover** - human approval (gate `write_cutover`) after 100 % held.
6. **write_cutover** - `keep_old_sync` on (if `cutover.keep_old_sync` is set), then `write_to_new`
   on; both audited. The ledger entry of `write_to_new` is the cutover point rollback scenario 3
   and phase 6 read.
7. **end_keep_old_sync** - deferred until the `cutover.keep_old_sync` period is over, then
   `keep_old_sync` off (left alone if a rollback moved writes back).

**dry_run** (Param) prints the plan - the exact UPDATE of every flag flip (each rollout step, the
write cutover, the end of keep_old_sync), planned against the flags as they are now - and changes
nothing: the checklist, approvals and flips are skipped. Every flip is a `SetFlag` step (run state in
`step_state`, one `set_flag` ledger entry per real change).

Re-running starts again at the first step (seed scenario 2: "re-attempt cutover with 10%").
See docs/phase5-cutover.md.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, task

from migration_engine.airflow.approvals import approval
from migration_engine.airflow.cutover import CHECKS, checklist_result, checklist_sensors, rollout_pcts
from migration_engine.airflow.dags import migration_dag
from migration_engine.airflow.dry_run import choose
from migration_engine.airflow.operators import KeepOldSyncEndOperator, ReadRolloutStepOperator
from migration_engine.airflow.tasks import on_legacy, run_steps

PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the exact flag changes the cutover would make, and change nothing."),
}


@migration_dag("migration_phase5_cutover", doc_md=__doc__, tags_=("phase5", "cutover"), params=PARAMS)
def migration_phase5_cutover():
    @task.branch
    def choose_mode() -> str | list[str]:
        return choose("show_plan", CHECKS)

    @task
    def show_plan() -> dict:
        from migration_engine.cutover.steps import plan_steps

        return run_steps(plan_steps, dry=True)

    checks = checklist_sensors()

    approve_read = approval(
        "approve_read_cutover", "Start the read cutover (phase 5)?",
        "The pre-cutover checklist passed (dual-write, consistency, shadow reads, verified backup). Approving "
        "starts the gradual read rollout; any error-rate rise above the threshold rolls reads back to the old "
        "tables automatically.",
        approval_point="pre_cutover", figures_from=CHECKS)

    @task
    def measure_baseline() -> dict:
        from migration_engine.cutover.tasks import measure_baseline as measure

        return on_legacy(measure)

    steps = [ReadRolloutStepOperator(task_id=f"read_rollout_{pct}pct", pct=pct) for pct in rollout_pcts()]

    approve_write = approval(
        "approve_write_cutover", "Switch writes to the new tables (write cutover)?",
        "Reads have been served 100% from the new tables for the whole final hold without an error-rate "
        "rise. Approving sets keep_old_sync (if configured) and write_to_new. Undo: migration_rollback_writes.",
        approval_point="write_cutover", figures_from=[steps[-1].task_id])

    @task
    def write_cutover() -> dict:
        from migration_engine.cutover.tasks import write_cutover as cut

        return on_legacy(cut)

    mode = choose_mode()
    mode >> show_plan()
    result = checklist_result()
    mode >> checks
    checks >> result >> approve_read
    chain(approve_read, measure_baseline(), *steps, approve_write, write_cutover(),
          KeepOldSyncEndOperator(task_id="end_keep_old_sync"))


migration_phase5_cutover()
