"""migration_phase2_dual_write: turn dual-write on, prove it healthy, backfill history at DB speed.

Seed phase 2 ("Dual-Write Period"). Steps:

1. **enable_dual_write** - sets the `dual_write_enabled` flag (ledger entry in the same transaction).
2. **dual_write_healthy** - deferrable gate (no worker slot while it waits): dual-write success over
   the rolling window (config `dual_write.window`, 1 h) must be ≥ `gate_min_success_pct` with at least
   `min_attempts` attempts and no stretch without data longer than `max_gap`. < 95 % pages a warning,
   < 90 % pages critical and fails the task; p95 > 500 ms warns. A full healthy window also proves
   every application instance has picked up the flag, so rows created from now on reach the new table.
3. **plan_backfill** - validates the mapping against the data and splits the in-scope key space into
   `parallelism` non-overlapping ranges (or resumes the unfinished pass from its checkpoints).
4. **backfill_range** (one mapped task per range; Celery spreads them over workers) - keyset pages,
   `COPY` out of the legacy DB, one `INSERT … SELECT … ON CONFLICT` (newer version wins) per batch,
   checkpoint per batch, adaptive batch size, rows/s cap, pauses on health signals. A killed task
   resumes on retry where it stopped.
5. **finish_backfill** - closes the pass (all ranges done) and reports totals.
6. **dual_write_healthy_after_backfill** - the same gate over a window that covers the backfill.
7. **phase2_summary** - one ledger entry with the figures.

Params: `batch_size`, `max_rows_per_second` (0 = no cap), `parallelism`, `dry_run` (plan and show the
SQL, change nothing, gates evaluate once), `restart_backfill`, `entities`, `gate_min_success_pct`,
`gate_timeout_seconds`. Runbook: docs/phase2.md; gates: docs/gates.md.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from migration_engine.airflow.dags import START_DATE, config, default_args, tags
from migration_engine.gates.sensor import GateSensor

CFG = config()


@dag(
    dag_id="migration_phase2_dual_write",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=tags("phase2", "dual-write", "backfill"),
    doc_md=__doc__,
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
    },
)
def migration_phase2_dual_write():
    def _ids() -> tuple[str, str]:
        ctx = get_current_context()
        return ctx["dag"].dag_id, ctx["run_id"]

    @task
    def enable_dual_write() -> dict:
        from migration_engine.backfill.tasks import enable_dual_write

        dag_id, run_id = _ids()
        return enable_dual_write(config(), dry_run=bool(get_current_context()["params"]["dry_run"]),
                                 dag_id=dag_id, run_id=run_id)

    gate_common = dict(
        gate="dual_write_health",
        # compressed rehearsals (time_scale) would otherwise poke many times a second
        poke_interval=max(CFG.dual_write.poke_interval, timedelta(seconds=5)),
        timeout=CFG.dual_write.gate_timeout,
        gate_timeout="{{ params.gate_timeout_seconds }}",
        fail_on=("critical",),
        dry_run="{{ params.dry_run }}",
    )
    healthy = GateSensor(task_id="dual_write_healthy",
                         gate_params={"min_success_pct": "{{ params.gate_min_success_pct }}"}, **gate_common)

    @task
    def plan_backfill() -> list[dict]:
        from migration_engine.backfill.tasks import plan_backfill

        dag_id, run_id = _ids()
        return plan_backfill(config(), dict(get_current_context()["params"]), dag_id=dag_id, run_id=run_id)

    @task(retries=3, retry_delay=timedelta(seconds=30), retry_exponential_backoff=True)
    def backfill_range(job: dict) -> dict:
        from migration_engine.backfill.tasks import run_range

        dag_id, run_id = _ids()
        return run_range(config(), job, dict(get_current_context()["params"]), dag_id=dag_id, run_id=run_id)

    @task(trigger_rule="none_failed")  # zero ranges left (a resumed, finished pass) still finishes
    def finish_backfill(jobs: list[dict], results: list[dict]) -> dict:
        from migration_engine.backfill.tasks import finish_backfill

        dag_id, run_id = _ids()
        # index by length: iterating the lazy XCom sequence probes one offset past the end (a 404 in the log)
        copied = [results[i] for i in range(len(results))]
        return finish_backfill(config(), jobs, copied, dict(get_current_context()["params"]),
                               dag_id=dag_id, run_id=run_id)

    after = GateSensor(
        task_id="dual_write_healthy_after_backfill",
        gate_params={"min_success_pct": "{{ params.gate_min_success_pct }}",
                     "window": "{{ ti.xcom_pull(task_ids='finish_backfill')['gate_window_seconds'] }}"},
        **gate_common)

    @task
    def phase2_summary(flag: dict, before: dict, finished: dict, after_gate: dict) -> dict:
        from migration_engine.backfill.tasks import phase_summary

        dag_id, run_id = _ids()
        summary = {"dual_write_flag": flag, "gate_before": before.get("figures") if before else None,
                   "backfill": finished, "gate_after": after_gate.get("figures") if after_gate else None}
        return phase_summary(config(), summary, dry_run=bool(get_current_context()["params"]["dry_run"]),
                             dag_id=dag_id, run_id=run_id)

    flag = enable_dual_write()
    jobs = plan_backfill()
    copied = backfill_range.expand(job=jobs)
    finished = finish_backfill(jobs, copied)
    flag >> healthy >> jobs
    finished >> after
    phase2_summary(flag, healthy.output, finished, after.output)


migration_phase2_dual_write()
