"""Pre-cutover checklist pieces that are not general gates: the verified pre-cutover backup.

The checklist (seed 5.1) is four gates in the phase-5 DAG, each a ``GateSensor`` (every evaluation
in ``gate_results``):

* ``dual_write_health`` with ``min_success_pct = cutover.dual_write_min_success_pct`` over
  ``cutover.dual_write_window`` (seed: > 99 % for 48 h);
* ``consistency_passed_recently`` with ``max_age = cutover.consistency_max_age``;
* ``shadow_reads`` with ``max_mismatch_pct = cutover.shadow_mismatch_max_pct`` (seed: < 0.1 %) over
  ``cutover.shadow_window`` with at least ``cutover.shadow_min_reads`` reads;
* :func:`pre_cutover_backup` (this module, referenced as
  ``migration_engine.cutover.checklist:pre_cutover_backup``): a backup taken and verified by
  ``migration_preflight_backup`` (restore-tested; its manifest is in the audit ledger) whose
  snapshot is younger than ``cutover.backup_max_age`` and whose file is still there, unchanged in
  size. Seed: "Always maintain point-in-time backup before write cutover" - rollback scenario 3
  restores exactly this backup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.errors import Refused
from migration_engine.gates import GateResult
from migration_engine.gates.window import fmt_duration

GATE = "pre_cutover_backup"


def backup_manifests(conn, schema: str, *, before: datetime | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Verified backup manifests from the ledger, newest snapshot first."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "cutover/backup_manifests.sql", {"schema": schema},
                     {"before": before, "max_rows": limit})
        rows = cur.fetchall()
    if not conn.autocommit:
        conn.rollback()
    return [{"audit_id": r[0], "recorded_at": r[1], **(r[2] or {})} for r in rows]


def for_legacy_database(manifest: dict[str, Any], cfg: MigrationConfig) -> bool:
    conn_id = manifest.get("conn_id")
    return conn_id in (None, cfg.connections.legacy)


def file_problem(manifest: dict[str, Any]) -> str | None:
    """Why the dump named in a manifest is not usable now (None: present, same size)."""
    path = Path(str(manifest.get("file", "")))
    if not path.is_file():
        return f"the dump file {path} is gone"
    size = path.stat().st_size
    if size != manifest.get("size_bytes"):
        return f"the dump file {path} is {size} bytes, the verified manifest says {manifest.get('size_bytes')}"
    return None


def pre_cutover_backup(conn, cfg: MigrationConfig, now: datetime, **params: Any) -> GateResult:
    """A verified backup of the legacy database whose snapshot is younger than ``max_age``."""
    from migration_engine.gates.dual_write import duration_param

    unknown = sorted(set(params) - {"max_age"})
    if unknown:
        raise ValueError(f"{GATE}: unknown gate param(s) {unknown}; known: ['max_age']")
    max_age = duration_param(params.get("max_age", cfg.cutover.backup_max_age), "max_age", cfg)
    manifests = [m for m in backup_manifests(conn, cfg.control_schema) if for_legacy_database(m, cfg)]
    figures: dict[str, Any] = {"max_age": fmt_duration(max_age)}
    if not manifests:
        return GateResult(GATE, "waiting", "no verified backup of the legacy database yet: run "
                          "migration_preflight_backup", figures)
    latest = manifests[0]
    taken = datetime.fromisoformat(latest["snapshot_taken_at"])
    age = now - taken
    figures.update({"file": latest.get("file"), "snapshot_taken_at": taken.isoformat(timespec="seconds"),
                    "age": fmt_duration(age), "wal_lsn": latest.get("wal_lsn"), "sha256": latest.get("sha256"),
                    "total_rows": latest.get("total_rows"), "verified_at": latest.get("verified_at"),
                    "restore_checked": not (latest.get("restore_check") or {}).get("skipped", False)})
    problem = file_problem(latest)
    if problem:
        return GateResult(GATE, "critical", f"latest verified backup unusable: {problem}; take a new one with "
                          "migration_preflight_backup", figures)
    if age > max_age:
        return GateResult(GATE, "waiting", f"the latest verified backup was taken {fmt_duration(age)} ago, older "
                          f"than {fmt_duration(max_age)}: take a fresh one with migration_preflight_backup", figures)
    return GateResult(GATE, "passed", f"verified backup {latest.get('file')} taken {fmt_duration(age)} ago "
                      f"(within {fmt_duration(max_age)})", figures)


# --- the checklist's one page per run ------------------------------------------------------------
class ChecklistNotMet(Refused):
    """The pre-cutover checklist did not pass in this run; on-call has been paged once with the next steps."""

    already_paged = True  # the layer's failure callback does not page a second time


@dataclass(frozen=True)
class Check:
    """One checklist gate: its task, its name in ``gate_results`` and what to do when it is short."""

    task_id: str
    gate: str
    title: str
    next_step: str  # str.format'ed with the config's cutover section (co) and dual_write section (dw)


CHECKLIST: tuple[Check, ...] = (
    Check("check_dual_write", "cutover_dual_write", "Dual-write health",
          "Dual-write must succeed ≥ {co.dual_write_min_success_pct:g}% for {dual_write_window} with data all along: "
          "make sure migration_phase2_dual_write ran (dual_write_enabled on) and the application reports its "
          "dual-write stats, then trigger migration_phase5_cutover again once that much history exists."),
    Check("check_consistency", "consistency_passed_recently", "Consistency",
          "Run migration_phase4_validation: a full consistency run must pass less than {consistency_max_age} "
          "before phase 5 (differences: migration_phase3_repair, then phase 4 again)."),
    Check("check_shadow_reads", "cutover_shadow_reads", "Shadow reads",
          "Shadow reads come from migration_phase4_validation (shadow_read_pct): at least "
          "{co.shadow_min_reads:,} reads compared over {shadow_window}, mismatches below "
          "{co.shadow_mismatch_max_pct:g}%; let them run, then trigger phase 5 again."),
    Check("check_backup", "pre_cutover_backup", "Pre-cutover backup",
          "Run migration_preflight_backup (a restore-verified backup younger than {backup_max_age}), then "
          "trigger phase 5 again."),
    Check("check_performance", "cutover_read_latency", "Read performance",
          "The new tables' reads are slower than allowed (p95 within +{co.performance_max_p95_increase_pct:g}% of "
          "the old path over {performance_window}): check the new tables' indexes and query plans "
          "(pg_stat_statements), fix, let shadow reads run again, then trigger phase 5 again."),
)
CHECKLIST_GATES = tuple(c.gate for c in CHECKLIST)


def next_step(check: Check, cfg: MigrationConfig) -> str:
    co = cfg.cutover
    return check.next_step.format(
        co=co, dw=cfg.dual_write, dual_write_window=fmt_duration(co.dual_write_window),
        consistency_max_age=fmt_duration(co.consistency_max_age), shadow_window=fmt_duration(co.shadow_window),
        backup_max_age=fmt_duration(co.backup_max_age), performance_window=fmt_duration(co.performance_window))


def checklist_key(dag_id: str) -> str:
    """One open checklist alert per DAG: a second early run updates it instead of paging again."""
    return f"checklist:{dag_id}"


def latest_of_run(conn, schema: str, dag_id: str, run_id: str) -> dict[str, tuple[str, str, dict]]:
    """gate -> (status, reason, figures) of the latest evaluation of each checklist gate in this run."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "cutover/checklist_latest.sql", {"schema": schema},
                     {"gates": list(CHECKLIST_GATES), "dag_id": dag_id, "run_id": run_id})
        rows = cur.fetchall()
    if not conn.autocommit:
        conn.rollback()
    return {gate: (status, reason, figures or {}) for gate, status, reason, figures in rows}


def report_checklist(conn, cfg: MigrationConfig, *, actor: str, context: dict[str, Any]) -> dict[str, Any]:
    """After the checklist gates (whatever their outcome): pass on, or page once with every shortfall.

    Reads this run's latest evaluation of each gate from ``gate_results``. All passed: returns the
    summary (the open checklist alert, if any, is resolved by the passing evaluations themselves).
    Otherwise one alert - critical if a gate found something wrong (critical / could not be evaluated),
    warning if the data is only not there yet - listing each short gate with its figure and the next
    step, deduplicated per DAG and resolved when all the gates it names pass again; then
    :class:`ChecklistNotMet` fails the run (its failure callback does not page again).
    """
    from migration_engine.alerts import send_alert

    dag_id, run_id = context.get("dag_id"), context.get("run_id")
    latest = latest_of_run(conn, cfg.control_schema, dag_id, run_id)
    short: list[tuple[Check, str, str]] = []
    summary: dict[str, Any] = {}
    for check in CHECKLIST:
        missing = ("missing", "no evaluation recorded in this run (the task failed before evaluating: see its log)",
                   {})
        status, reason, _figures = latest.get(check.gate, missing)
        summary[check.gate] = {"status": status, "reason": reason}
        if status != "passed":
            short.append((check, status, reason))
    if not short:
        return {"passed": True, "gates": summary}
    severe = any(status in ("critical", "failed", "missing") for _c, status, _r in short)
    lines = [f"Phase 5 did not start: {len(short)} of {len(CHECKLIST)} pre-cutover checks are not met in run "
             f"{run_id}. Nothing was changed (read_new_pct and write_to_new are as they were)."]
    for check, status, reason in short:
        lines.append(f"\n• *{check.title}* ({status}): {reason}\n   _Next:_ {next_step(check, cfg)}")
    lines.append("\nThis alert resolves by itself when every check above passes again.")
    text = "\n".join(lines)
    figures = {c.title: s for c, s, _r in short}
    send_alert("critical" if severe else "warning", f"Phase 5 checklist not met: {len(short)} check(s) short",
               text, figures=figures, dag_id=dag_id, run_id=run_id, task_id=context.get("task_id"), cfg=cfg,
               dedup_key=checklist_key(dag_id), conn=conn, schema=cfg.control_schema,
               conditions=[c.gate for c, _s, _r in short])
    raise ChecklistNotMet(f"pre-cutover checklist not met ({', '.join(c.title for c, _s, _r in short)}); "
                          f"on-call paged once with the next steps:\n{text}")
