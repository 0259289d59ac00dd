"""The phase-2 DAG's task bodies: one call each from ``dags/migration_phase2_dual_write.py``.

They take the run's config, Params and ids from the task context and call the engine
(``migration_engine.phase2``, ``migration_engine.backfill.tasks``); refusals fail the task without
retries (``outcome``). The backfill follows the step contract: ``plan_backfill`` applies the
``BackfillPass`` steps (dry run: prints their plan - key ranges and one batch's SQL - and copies
nothing) and returns their work items for the mapped ``backfill_range`` tasks; ``finish_backfill``
closes the passes and verifies the steps (per-row checksum diff, state in ``step_state``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from migration_engine.airflow.context import dry_run, params, task_context
from migration_engine.airflow.dags import config
from migration_engine.airflow.tasks import outcome, run_steps


def budget_params(cfg) -> dict[str, Any]:
    """The latency-budget Params of the trigger form (read by ``backfill.tasks.settings_from_params``)."""
    from airflow.sdk import Param

    b = cfg.backfill.throttle.budget
    return {
        "latency_budget_pct": Param(
            b.max_latency_increase_pct if b.enabled else None, type=["null", "number"], minimum=0, maximum=1000,
            title="Latency budget (% over baseline)",
            description="The copy runs as fast as this allows: probe latency on both databases and the "
                        "application's p95 at most this many % over their baseline, measured before the copy. "
                        "0 = controller off (fixed Max rows/s only); empty = the config's "
                        "backfill.throttle.budget."),
        "replica_lag_budget_seconds": Param(
            None, type=["null", "number"], exclusiveMinimum=0, title="Replica lag budget (seconds)",
            description="Replication lag of either database the controller aims under; empty = the config's "
                        f"({b.max_replication_lag.total_seconds():g}s)."),
        "app_p95_ms": Param(
            b.app_p95_ms, type=["null", "number"], exclusiveMinimum=0, title="Application p95 (ms)",
            description="The application's p95 latency as your APM or load balancer shows it. Set: each probe "
                        "may rise the budget's % of it (+20 % of a 10 ms p95 = 2 ms more per lookup and commit), "
                        "the extra latency the budget allows one request; the copy then uses quiet hours fully "
                        "and backs off in peaks. Empty = the config's probe_allowance "
                        f"({b.probe_allowance}: relative = +budget % of each probe's own sub-millisecond "
                        "baseline, much stricter)."),
    }


def _ids() -> tuple[str, str]:
    _actor, ctx = task_context()
    return ctx["dag_id"], ctx["run_id"]


def _backfill_steps(p: dict[str, Any]):
    from migration_engine import phase2

    dag_id, run_id = _ids()
    return lambda cfg: phase2.backfill_steps(cfg, p, dag_id=dag_id, run_id=run_id)


def enable_dual_write() -> dict[str, Any]:
    from migration_engine import phase2

    return run_steps(phase2.dual_write_steps)


def plan_backfill() -> list[dict]:
    """Apply (dry run: plan) one ``BackfillPass`` per entity; returns one job per unfinished range."""
    from migration_engine.backfill.tasks import range_jobs

    build = _backfill_steps(params())
    steps: list = []

    def keep(cfg) -> Sequence[Any]:
        steps[:] = build(cfg)
        return steps

    run_steps(keep, verify=False)  # verified once the ranges are copied (finish_backfill)
    return range_jobs(steps)


def backfill_range(job: dict[str, Any]) -> dict[str, Any]:
    from migration_engine.backfill.tasks import run_range

    dag_id, run_id = _ids()
    with outcome():
        return run_range(config(), job, params(), dag_id=dag_id, run_id=run_id)


def verify_steps(build) -> list[dict[str, Any]]:
    """``StepRunner.verify`` of the steps ``build(cfg)`` returns (raises VerificationError naming every problem)."""
    from migration_engine import db
    from migration_engine.steps import StepRunner

    cfg = config()
    actor, ctx = task_context()
    with outcome(), db.connection(cfg.connections.legacy) as conn:
        runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor, context=ctx)
        return [r.as_dict() for r in runner.verify(list(build(cfg)))]


def finish_backfill(jobs: list[dict], results: Sequence[dict]) -> dict[str, Any]:
    """Close every pass whose ranges are all done, then verify old == new (skipped in a dry run)."""
    from migration_engine.backfill.tasks import finish_backfill as finish

    p = params()
    dag_id, run_id = _ids()
    # index by length: iterating the lazy XCom sequence probes one offset past the end (a 404 in the log)
    copied = [results[i] for i in range(len(results))]
    with outcome():
        finished = finish(config(), jobs, copied, p, dag_id=dag_id, run_id=run_id)
    if not dry_run():
        finished["verified"] = verify_steps(_backfill_steps(p))
    return finished


def phase2_summary(flag: dict, before: dict | None, finished: dict, after: dict | None) -> dict[str, Any]:
    from migration_engine.backfill.tasks import phase_summary

    dag_id, run_id = _ids()
    summary = {"dual_write_flag": flag, "gate_before": before.get("figures") if before else None,
               "backfill": finished, "gate_after": after.get("figures") if after else None}
    with outcome():
        return phase_summary(config(), summary, dry_run=dry_run(), dag_id=dag_id, run_id=run_id)
