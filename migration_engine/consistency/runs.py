"""The pieces of a consistency run that the run step (``consistency.step.ConsistencyRun``) is made of.

Which checks a config has (``plan_checks``), how one runs (``execute_check``), the verdict of a run
from its stored results (``summarize``: a planned check without a result counts as an error), the
failure text alerts and the verification error show (``describe_failure``), and phase 4's ledger
entry (``record_validation``). No Airflow here: the Airflow layer
(``migration_engine.airflow.consistency``) wires these into tasks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from migration_engine import db
from migration_engine.config import MigrationConfig
from migration_engine.consistency.results import CheckResult, ConsistencyError
from migration_engine.consistency.sessions import APPLICATION_NAME

log = logging.getLogger(__name__)

Connectors = dict[str, Callable[[], Any]]  # "legacy" / "new" -> connection factory


def connectors(cfg: MigrationConfig) -> Connectors:
    return {side: (lambda s=side: db.connect(cfg.conn_id(s), application_name=APPLICATION_NAME))
            for side in ("legacy", "new")}


# --- planning --------------------------------------------------------------------------------
def plan_checks(cfg: MigrationConfig) -> list[dict[str, str]]:
    """One entry per check: entity diffs, cross-DB references, count parities."""
    from migration_engine.consistency.suites import suite_names

    checks = [{"kind": "entity", "name": n} for n in cfg.entities]
    checks += [{"kind": "reference", "name": r.name} for r in cfg.references]
    checks += [{"kind": "count", "name": p.name} for p in cfg.consistency.count_parity]
    names = [c["name"] for c in checks] + suite_names(cfg)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConsistencyError(
            f"consistency check names must be unique across entities, references, count_parity and the "
            f"suites derived from them; repeated: {dupes} (rename an entry in include/migration.yaml)")
    return checks


# --- checks ----------------------------------------------------------------------------------
def execute_check(cfg: MigrationConfig, check: dict[str, str], connect: dict[str, Callable[[], Any]]) -> CheckResult:
    from migration_engine.consistency.diff import diff_entity
    from migration_engine.consistency.references import check_count, check_reference

    kind, name = check["kind"], check["name"]
    if kind == "entity":
        return diff_entity(cfg, name, connect["legacy"], connect["new"])
    if kind == "reference":
        return check_reference(cfg, name, connect)
    if kind == "count":
        return check_count(cfg, name, connect)
    raise ValueError(f"unknown check kind {kind!r} in {check}")


def log_result(result: CheckResult, max_keys: int) -> None:
    level = logging.INFO if result.passed else logging.ERROR
    log.log(level, "%s %s: %s", result.kind, result.status.upper(), result.message)
    for kind, keys in result.sample(max_keys).items():
        log.log(level, "  %s (first %d): %s", kind, len(keys), ", ".join(keys))


# --- suites ----------------------------------------------------------------------------------
def sqlalchemy_url(conn_id: str) -> str:
    """SQLAlchemy URL of a connection with its TLS settings, for GX (kept in an env var, never in GX's files)."""
    return db.get_connection(conn_id).sqlalchemy_url()


# --- verdict ---------------------------------------------------------------------------------
def summarize(cfg: MigrationConfig, run_pk: int | None, kind: str, rows: list[dict[str, Any]],
              expected: list[str]) -> dict[str, Any]:
    """The run's verdict from its stored results. Pure: tested without a database."""
    by_name = {r["check_name"]: r for r in rows}
    checks, failed, errors, warnings = [], [], [], []
    for name in expected:
        r = by_name.get(name)
        if r is None:
            errors.append(name)
            checks.append({"name": name, "kind": "?", "status": "error", "counts": {}, "sample": {},
                           "message": f"{name}: no result recorded (its task failed or did not run)"})
            continue
        item = {"name": name, "kind": r["check_kind"], "status": r["status"], "counts": r["counts"],
                "sample": r["sample"], "message": r["message"], "old_count": r["old_count"],
                "new_count": r["new_count"]}
        checks.append(item)
        severity = "warning" if name in _warning_suites(cfg) else "critical"
        if r["status"] == "passed":
            continue
        if severity == "warning":
            warnings.append(name)
        elif r["status"] == "failed":
            failed.append(name)
        else:
            errors.append(name)
    status = "failed" if failed else ("error" if errors else "passed")
    return {"run_pk": run_pk, "kind": kind, "status": status, "failed_checks": failed + errors,
            "warnings": warnings, "checks": checks, "checked": len(expected)}


def _warning_suites(cfg: MigrationConfig) -> set[str]:
    return {f"{vc.name}_validity" for vc in cfg.value_checks if vc.severity == "warning"}


def expected_checks(cfg: MigrationConfig, kind: str) -> list[str]:
    from migration_engine.consistency.suites import suite_names

    names = [c["name"] for c in plan_checks(cfg)]
    return names + (suite_names(cfg) if kind == "full" else [])


def describe_failure(summary: dict[str, Any], max_keys: int) -> str:
    """Counts and the first offending keys of every failing check, one line each."""
    lines = []
    if summary.get("message"):
        lines.append(summary["message"])
    for c in summary.get("checks", []):
        if c["status"] == "passed":
            continue
        counts = ", ".join(f"{k}={v}" for k, v in (c.get("counts") or {}).items() if v) or c["status"]
        # an "error" finding's key is the check's own name: the message says what went wrong
        keys = "; ".join(f"{k}: {', '.join(map(str, v[:max_keys]))}" for k, v in (c.get("sample") or {}).items()
                         if k != "error")
        line = f"- {c['name']} ({c['kind']}, {c['status']}): {counts}"
        if c.get("old_count") is not None or c.get("new_count") is not None:
            line += f" [old {c.get('old_count')} / new {c.get('new_count')}]"
        if keys:
            line += f" -- first keys: {keys}"
        if c["status"] == "error" or (not keys and not c.get("counts")):
            line += f" -- {c.get('message', '')}"
        lines.append(line)
    return "\n".join(lines)


def record_validation(ex, cfg: MigrationConfig, gate_result: dict[str, Any] | None,
                      verdict_result: dict[str, Any] | None) -> dict[str, Any]:
    """Phase 4 passed: one audit-ledger entry (gate figures + consistency run id) through ``ex``.

    ``ex`` is the task's executor (``ex.actor`` / ``ex.context`` name who and which run); a planning
    executor only records the INSERT, so a dry run writes nothing.
    """
    from migration_engine import control

    figures = (gate_result or {}).get("figures") or {}
    details = {"shadow_reads": {k: figures.get(k) for k in ("reads_compared", "mismatches", "mismatch_pct",
                                                             "window", "cohorts") if k in figures},
               "shadow_gate_result_id": (gate_result or {}).get("gate_result_id"),
               "consistency_run": (verdict_result or {}).get("run_pk"),
               "dag_id": ex.context.get("dag_id"), "run_id": ex.context.get("run_id")}
    entry = {"actor": ex.actor, "action": "phase4_validated", "target": cfg.name, "details": details,
             "reason": "shadow-read gate passed and the full consistency run passed"}
    text = ex.render("control/audit_append.sql", {"schema": cfg.control_schema},
                     {**entry, "details": json.dumps(details, default=str)})
    written = ex.action(text, lambda: control.audit(ex.conn, cfg.control_schema, **entry))
    if written is None:
        log.info("dry run: phase 4 would be recorded as validated: %s", details)
        return {"dry_run": True, **details}
    audit_id, at = written
    log.info("phase 4 validated (audit entry %s at %s): %s", audit_id, at, details)
    return {"audit_id": audit_id, **details}


def shadow_reads_step(cfg: MigrationConfig, pct: int):
    """Phase 4 (seed 4.1): ``shadow_read_pct := pct`` as a flag step (audited, idempotent, revertible).

    Nothing else turns shadow reads on, and the shadow-read gate waits for comparisons the application
    only makes while this flag is above 0. Phase 6 turns it off before archiving the old tables.
    """
    from migration_engine.flag_step import SetFlag

    return SetFlag(cfg.control_schema, "shadow_read_pct", int(pct), phase="phase4",
                   reason=f"phase 4 shadow reads: compare {int(pct)}% of reads (seed 4.1)")
