"""migration_phase2_dual_write: turn dual-write on, prove it healthy, backfill history at DB speed.

Seed phase 2 ("Dual-Write Period"). Steps:

1. **enable_dual_write** - the `dual_write_enabled` flag as a step (`SetFlag`: ledger entry in the same
   transaction, state in `step_state`, revert restores the value found).
2. **dual_write_healthy** - deferrable gate (no worker slot while it waits): dual-write success over
   the rolling window (config `dual_write.window`, 1 h) must be ≥ `gate_min_success_pct` with at least
   `min_attempts` attempts and no stretch without data longer than `max_gap`. < 95 % pages a warning,
   < 90 % pages critical and fails the task; p95 > 500 ms warns. A full healthy window also proves
   every application instance has picked up the flag, so rows created from now on reach the new table.
3. **plan_backfill** - applies one `BackfillPass` step per entity: validates the mapping against the data
   and splits the in-scope key space into `parallelism` non-overlapping ranges (or resumes the unfinished
   pass from its checkpoints); a dry run prints the ranges and one batch's exact SQL.
4. **backfill_range** (one mapped task per range; Celery spreads them over workers) - keyset pages,
   `COPY` out of the legacy DB, one `INSERT … SELECT … ON CONFLICT` (newer version wins) per batch,
   checkpoint per batch, adaptive batch size, rows/s cap, pauses on health signals. A killed task
   resumes on retry where it stopped.
5. **finish_backfill** - closes the pass (all ranges done), reports totals and verifies the steps: every
   in-scope old row has exactly one equal new row (counts and per-row checksums).
6. **dual_write_healthy_after_backfill** - the same gate over a window that covers the backfill.
7. **phase2_summary** - one ledger entry with the figures.

Params: `batch_size`, `max_rows_per_second` (0 = no cap), `parallelism`, `dry_run` (plan and show the
SQL, change nothing, gates evaluate once), `restart_backfill`, `entities`, `gate_min_success_pct`,
`gate_timeout_seconds`. Runbook: docs/phase2.md; gates: docs/gates.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, task

from migration_engine.airflow import phase2
from migration_engine.airflow.dags import config, migration_dag
from migration_engine.airflow.sensors import GateSensor

CFG = config()


@migration_dag(
    "migration_phase2_dual_write",
    doc_md=__doc__,
    tags_=("phase2", "dual-write", "backfill"),
    params={
        "batch_size": Param(CFG.backfill.batch_size, type="integer", minimum=1, maximum=1_000_000,
                            title="Batch size", description="Rows per batch to start with (adapts toward "
                            "the target batch duration within the config's min/max)."),
        "max_rows_per_second": Param(CFG.backfill.max_rows_per_second, type="integer", minimum=0,
                                     title="Max rows/s", description="Cap for the whole backfill; 0 = none."),
        "parallelism": Param(CFG.backfill.parallelism, type="integer", minimum=1, maximum=64,
                             title="Parallelism", description="Key ranges copied in parallel (a new plan only; "
                             "a resumed pass keeps its ranges)."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Plan and log the exact SQL; change no flag and copy nothing."),
        "restart_backfill": Param(False, type="boolean", title="Restart backfill",
                                  description="Cancel an unfinished pass instead of resuming it."),
        "entities": Param(list(CFG.entities), type="array", title="Entities",
                          description=f"Entities to backfill (configured: {', '.join(CFG.entities)})."),
        "gate_min_success_pct": Param(CFG.dual_write.warn_below_pct, type="number", minimum=0, maximum=100,
                                      title="Gate: min dual-write success %"),
        "gate_timeout_seconds": Param(CFG.dual_write.gate_timeout.total_seconds(), type="number",
                                      exclusiveMinimum=0, title="Gate: give up after (seconds)"),
        **phase2.budget_params(CFG),
    },
)
def migration_phase2_dual_write():
    @task
    def enable_dual_write() -> dict:
        return phase2.enable_dual_write()

    gate_common = dict(
        gate="dual_write_health",
        # compressed rehearsals (time_scale) would otherwise poke many times a second
        poke_interval=max(CFG.dual_write.poke_interval, timedelta(seconds=5)),
        timeout=CFG.dual_write.gate_timeout,
        gate_timeout="{{ params.gate_timeout_seconds }}",
        fail_on=("critical",),
        dry_run="{{ params.dry_run }}",
        # Airflow 3.3.2 can fail a task right after it defers (stale executor event): one retry
        # re-defers; evaluating again is safe. Timeouts and fail_on statuses never retry.
        retries=1,
    )
    healthy = GateSensor(task_id="dual_write_healthy",
                         gate_params={"min_success_pct": "{{ params.gate_min_success_pct }}"}, **gate_common)

    @task
    def plan_backfill() -> list[dict]:
        return phase2.plan_backfill()

    @task(retries=3, retry_delay=timedelta(seconds=30), retry_exponential_backoff=True)
    def backfill_range(job: dict) -> dict:
        return phase2.backfill_range(job)

    @task(trigger_rule="none_failed")  # zero ranges left (a resumed, finished pass) still finishes
    def finish_backfill(jobs: list[dict], results: list[dict]) -> dict:
        return phase2.finish_backfill(jobs, results)

    after = GateSensor(
        task_id="dual_write_healthy_after_backfill",
        gate_params={"min_success_pct": "{{ params.gate_min_success_pct }}",
                     "window": "{{ ti.xcom_pull(task_ids='finish_backfill')['gate_window_seconds'] }}"},
        **gate_common)

    @task
    def phase2_summary(flag: dict, before: dict, finished: dict, after_gate: dict) -> dict:
        return phase2.phase2_summary(flag, before, finished, after_gate)

    flag = enable_dual_write()
    jobs = plan_backfill()
    copied = backfill_range.expand(job=jobs)
    finished = finish_backfill(jobs, copied)
    flag >> healthy >> jobs
    finished >> after
    phase2_summary(flag, healthy.output, finished, after.output)


migration_phase2_dual_write()
