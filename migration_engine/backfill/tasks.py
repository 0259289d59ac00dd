"""Task bodies of the phase-2 DAG (dual-write flag, backfill plan / ranges / finish).

DAG files stay thin: they call these with the config and the run's Params; everything here is
plain Python over psycopg2 connections opened by Airflow connection id.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from migration_engine import control, db
from migration_engine.backfill.engine import RangeWorker
from migration_engine.backfill.plan import plan_entity
from migration_engine.backfill.runs import finish_run
from migration_engine.backfill.settings import BackfillError, backfill_settings
from migration_engine.config import Backfill, MigrationConfig

log = logging.getLogger(__name__)

SETTING_PARAMS = ("batch_size", "max_rows_per_second", "parallelism")


def actor(dag_id: str | None, run_id: str | None) -> str:
    return f"airflow:{dag_id}/{run_id}"


def settings_from_params(cfg: MigrationConfig, params: dict[str, Any]) -> Backfill:
    """The config's ``backfill`` section, overridden by the run's Params (None = keep the config's)."""
    return backfill_settings(cfg, **{k: params.get(k) for k in SETTING_PARAMS})


def enable_dual_write(cfg: MigrationConfig, *, dry_run: bool, dag_id: str, run_id: str) -> dict[str, Any]:
    """Turn on ``dual_write_enabled`` (audited in the same transaction); no-op when already on."""
    schema = cfg.control_schema
    with db.connection(cfg.connections.legacy) as conn:
        flags = control.get_flags(conn, schema)
        conn.commit()
        if flags["dual_write_enabled"]:
            log.info("dual_write_enabled is already on; nothing to change")
            return {"changed": False, "dual_write_enabled": True}
        if dry_run:
            log.info("dry run: would set dual_write_enabled false -> true (audited as %s)", actor(dag_id, run_id))
            return {"changed": False, "dual_write_enabled": False, "dry_run": True}
        change = control.set_flag(conn, schema, "dual_write_enabled", True, actor=actor(dag_id, run_id),
                                  reason="phase 2: the dual-write period starts",
                                  context={"dag_id": dag_id, "run_id": run_id})
    log.info("dual_write_enabled: %s -> %s (ledger entry %s)", change.old_value, change.new_value, change.audit_id)
    return {"changed": True, "dual_write_enabled": True, "audit_id": change.audit_id}


def _entities(cfg: MigrationConfig, requested: list[str] | None) -> list[str]:
    names = list(requested) if requested else list(cfg.entities)
    unknown = [e for e in names if e not in cfg.entities]
    if unknown:
        raise BackfillError(f"entities {unknown} are not in the migration config; known: {sorted(cfg.entities)}")
    return names


def plan_backfill(cfg: MigrationConfig, params: dict[str, Any], *, dag_id: str, run_id: str) -> list[dict]:
    """Plan (or resume) a pass per entity; one job per unfinished range, for dynamic task mapping."""
    s = settings_from_params(cfg, params)
    dry_run = bool(params.get("dry_run"))
    jobs: list[dict] = []
    with db.connection(cfg.connections.legacy, application_name="migration-backfill-plan") as legacy, \
            db.connection(cfg.new_conn_id, application_name="migration-backfill-plan") as new:
        for entity in _entities(cfg, params.get("entities")):
            plan = plan_entity(legacy, new, cfg, entity, s, restart=bool(params.get("restart_backfill")),
                               dry_run=dry_run, dag_id=dag_id, dag_run_id=run_id, actor=actor(dag_id, run_id))
            if dry_run:
                log.info("dry run: %s would be copied in %d range(s), %s in-scope rows; SQL of one batch:\n%s",
                         entity, len(plan.jobs), f"{plan.rows_total:,}",
                         "\n\n".join(f"-- {k}\n{v}" for k, v in plan.sql.items()))
            pending = [j for j in plan.jobs if j.status != "done"]
            for job in pending:
                jobs.append({**job.as_dict(), "share": max(1, len(pending))})
            if plan.resumed:
                log.info("%s: resuming pass %s: %d range(s) left", entity, plan.run_id, len(pending))
    log.info("backfill jobs: %s", json.dumps(jobs, default=str))
    return jobs


def run_range(cfg: MigrationConfig, job: dict[str, Any], params: dict[str, Any], *, dag_id: str,
              run_id: str) -> dict[str, Any]:
    """Copy one range (a mapped task instance); resumes from the range's checkpoint."""
    if job.get("dry_run"):
        log.info("dry run: would copy %s keys (%s, %s] (~%s in-scope rows)", job["entity"], job["key_lo"],
                 job["key_hi"], f"{job['rows_total']:,}")
        return {**job, "status": "dry_run"}
    s = settings_from_params(cfg, params)
    worker = RangeWorker(
        cfg, job["entity"], job["run_id"], job["range_no"], s,
        lambda: db.connect(cfg.connections.legacy, application_name="migration-backfill"),
        lambda: db.connect(cfg.new_conn_id, application_name="migration-backfill"),
        share=job.get("share"), actor=actor(dag_id, run_id))
    return worker.run().as_dict()


def finish_backfill(cfg: MigrationConfig, jobs: list[dict], results: list[dict], params: dict[str, Any], *,
                    dag_id: str, run_id: str) -> dict[str, Any]:
    """Close every pass whose ranges are all done; the gate after this looks back over the backfill."""
    if params.get("dry_run"):
        log.info("dry run: %d range job(s) planned, nothing copied", len(jobs))
        return {"dry_run": True, "passes": [], "gate_window_seconds": cfg.dual_write.window.total_seconds()}
    passes = []
    with db.connection(cfg.connections.legacy, application_name="migration-backfill") as legacy:
        for pass_id in sorted({j["run_id"] for j in jobs}):
            passes.append({k: v for k, v in finish_run(legacy, cfg.control_schema, pass_id,
                                                        actor=actor(dag_id, run_id)).items() if k != "ranges"})
    seconds = max([r.get("seconds", 0.0) + r.get("paused_seconds", 0.0) for r in results if isinstance(r, dict)]
                  or [0.0])
    window = max(cfg.dual_write.window.total_seconds(), seconds)
    return {"passes": passes, "backfill_seconds": round(seconds, 1), "gate_window_seconds": round(window, 1)}


def phase_summary(cfg: MigrationConfig, summary: dict[str, Any], *, dry_run: bool, dag_id: str,
                  run_id: str) -> dict[str, Any]:
    """One ledger entry for the phase: what was copied and what the gates measured."""
    if dry_run:
        log.info("dry run: phase 2 summary would be %s", json.dumps(summary, default=str))
        return summary
    with db.connection(cfg.connections.legacy) as conn:
        audit_id, _ = control.audit(conn, cfg.control_schema, actor=actor(dag_id, run_id),
                                    action="phase2_backfill_complete", target="phase2", details=summary,
                                    reason="historical backfill done; dual-write healthy before and after")
    log.info("phase 2 summary (ledger entry %s): %s", audit_id, json.dumps(summary, default=str))
    return {**summary, "audit_id": audit_id}
