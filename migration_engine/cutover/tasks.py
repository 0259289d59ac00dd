"""Bodies of the phase-5 DAG's plain tasks (baseline, write cutover), callable without Airflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from migration_engine import control
from migration_engine.config import MigrationConfig
from migration_engine.control import current_flags
from migration_engine.cutover.flags import write_cutover_point
from migration_engine.errors import Refused
from migration_engine.gates.error_rate import old_path_baseline
from migration_engine.gates.window import fmt_duration


class CutoverRefused(Refused):
    """The cutover cannot proceed from the current state; the message says why."""


def measure_baseline(conn, cfg: MigrationConfig, *, actor: str, context: dict, now: datetime | None = None
                     ) -> dict[str, Any]:
    """The old path's read error rate before the first rollout step (fails closed without data)."""
    flags = current_flags(conn, cfg.control_schema)
    if flags.get("write_to_new"):
        raise CutoverRefused("writes are already on the new tables (write_to_new = true): the read rollout is "
                             "over; nothing to do (roll back with migration_rollback_writes if needed)")
    from migration_engine.gates.error_rate import path_totals

    counts, window = old_path_baseline(conn, cfg, now=now)
    end = now or datetime.now(UTC)
    timed = path_totals(conn, cfg.control_schema, list(cfg.entities), end - window)["old"]
    conn.rollback() if not conn.autocommit else None
    # baseline_p95_ms: the rollout's latency rollback compares against it when a check interval has too
    # few old-path reads (at 100 % there are none); None (no timings reported) disables that fallback.
    figures = {"baseline_pct": counts.error_pct, "requests": counts.requests, "errors": counts.errors,
               "baseline_p95_ms": timed.p95_ms, "baseline_timed_reads": timed.timed,
               "window": fmt_duration(window), "read_new_pct_before": flags.get("read_new_pct")}
    if counts.requests < cfg.cutover.min_requests_per_check:
        raise CutoverRefused(
            f"cannot establish the old-path baseline: only {counts.requests} old-path reads in the last "
            f"{fmt_duration(window)} (need {cfg.cutover.min_requests_per_check}); the rollout compares the new "
            "path against it, and no data is not success. Is the application reporting path_stats?")
    control.audit(conn, cfg.control_schema, actor=actor, action="read_rollout.baseline", target="read_new_pct",
                  details={**context, **figures},
                  reason=f"old-path read error rate {counts.error_pct:.3f}% over {fmt_duration(window)}")
    return figures


def write_cutover(conn, cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    """Reads at 100 % new -> the write-cutover steps (keep_old_sync on if configured, then write_to_new
    on), run and verified by ``StepRunner``; a re-run that finds them set writes nothing."""
    from migration_engine.cutover.steps import write_cutover_steps
    from migration_engine.steps import StepRunner

    flags = current_flags(conn, cfg.control_schema)
    if int(flags.get("read_new_pct", 0)) != 100 and not flags.get("write_to_new"):
        raise CutoverRefused(f"reads are at {flags.get('read_new_pct')}% on the new tables, not 100%: the write "
                             "cutover needs a completed read rollout (seed 5.3 'once reads are stable at 100%')")
    if flags.get("maintenance_mode"):
        raise CutoverRefused("maintenance_mode is on (a rollback in progress?): not moving writes")
    keep = cfg.cutover.keep_old_sync
    steps = write_cutover_steps(cfg)
    runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor, context=context)
    results = runner.apply(steps)
    runner.verify(steps)
    point = write_cutover_point(conn, cfg.control_schema)
    if point is None:
        raise CutoverRefused("write_to_new is on but the ledger has no record of the switch")
    out: dict[str, Any] = {"write_cutover_at": point.at.astimezone(UTC).isoformat(), "changed": results[-1].changed,
                           "ledger_id": point.audit_id, "keep_old_sync": keep is not None,
                           "steps": {r.step_id: r.notes for r in results}}
    if keep is not None:
        out["keep_old_sync_until"] = (point.at + keep).astimezone(UTC).isoformat()
    return out
