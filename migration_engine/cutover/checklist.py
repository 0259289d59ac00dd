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

from datetime import datetime
from pathlib import Path
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import MigrationConfig
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
