"""What the phase-3, phase-4 and hourly DAGs call (one function per task; Airflow-free logic).

A run: ``start_run`` (row in consistency_runs) -> ``plan_checks`` -> ``run_check`` per check (Airflow
maps over them) -> ``run_suites`` (GX, full runs only) -> ``finish_run`` (verdict from the stored
results; a planned check without a result counts as an error) -> ``escalate`` (hourly: Slack with
dedup / resolve) -> ``verdict`` (fails the DAG run when the consistency run did not pass).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from migration_engine import db
from migration_engine.config import MigrationConfig
from migration_engine.consistency import store
from migration_engine.consistency.results import CheckResult, ConsistencyCheckFailed, ConsistencyError
from migration_engine.consistency.sessions import APPLICATION_NAME

log = logging.getLogger(__name__)


def connectors(cfg: MigrationConfig) -> dict[str, Callable[[], Any]]:
    return {side: (lambda s=side: db.connect(cfg.conn_id(s), application_name=APPLICATION_NAME))
            for side in ("legacy", "new")}


def _control(cfg: MigrationConfig):
    return db.connection(cfg.connections.legacy, application_name=APPLICATION_NAME)


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


def start_run(cfg: MigrationConfig, *, kind: str, dag_id: str | None, run_id: str | None) -> int:
    with _control(cfg) as conn:
        run_pk = store.start_run(conn, cfg.control_schema, kind=kind, dag_id=dag_id, run_id=run_id,
                                 retention=cfg.consistency.retention)
    log.info("consistency run %s started (%s)", run_pk, kind)
    return run_pk


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


def _log_result(result: CheckResult, max_keys: int) -> None:
    level = logging.INFO if result.passed else logging.ERROR
    log.log(level, "%s %s: %s", result.kind, result.status.upper(), result.message)
    for kind, keys in result.sample(max_keys).items():
        log.log(level, "  %s (first %d): %s", kind, len(keys), ", ".join(keys))


def run_check(cfg: MigrationConfig, run_pk: int, check: dict[str, str]) -> dict[str, Any]:
    result = execute_check(cfg, check, connectors(cfg))
    _log_result(result, cfg.consistency.max_reported_keys)
    with _control(cfg) as conn:
        store.record_check(conn, cfg.control_schema, run_pk, result, max_keys=cfg.consistency.max_reported_keys)
    return result.summary(cfg.consistency.max_reported_keys)


# --- suites ----------------------------------------------------------------------------------
def sqlalchemy_url(conn_id: str) -> str:
    """SQLAlchemy URL of a connection with its TLS settings, for GX (kept in an env var, never in GX's files)."""
    return db.get_connection(conn_id).sqlalchemy_url()


def run_suites(cfg: MigrationConfig, run_pk: int, *, run_name: str,
               urls: dict[str, str] | None = None) -> dict[str, Any]:
    from migration_engine.consistency import suites

    urls = urls or {side: sqlalchemy_url(cfg.conn_id(side)) for side in ("legacy", "new")}
    with _control(cfg) as legacy, db.connection(cfg.new_conn_id, application_name=APPLICATION_NAME) as new:
        specs = suites.plan_suites(cfg, run_pk, legacy, new)
    outcome = suites.run_suites(cfg, specs, urls, run_name=run_name)
    max_keys = cfg.consistency.max_reported_keys
    with _control(cfg) as conn:
        for result in outcome.results:
            _log_result(result, max_keys)
            store.record_check(conn, cfg.control_schema, run_pk, result, max_keys=max_keys)
        store.set_data_docs(conn, cfg.control_schema, run_pk, outcome.data_docs)
    log.info("Data Docs: %s", outcome.data_docs)
    log.info("Data Docs URL: %s", outcome.data_docs_url)
    return {"data_docs": outcome.data_docs, "data_docs_url": outcome.data_docs_url,
            "suites": {r.name: r.status for r in outcome.results}}


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


def finish_run(cfg: MigrationConfig, run_pk: int | None, *, kind: str) -> dict[str, Any]:
    expected = expected_checks(cfg, kind)
    if run_pk is None:
        summary = summarize(cfg, None, kind, [], expected)
        summary["message"] = "the consistency run could not start (see the start_run task log)"
        return summary
    with _control(cfg) as conn:
        rows = store.run_results(conn, cfg.control_schema, run_pk)
        summary = summarize(cfg, run_pk, kind, rows, expected)
        store.finish_run(conn, cfg.control_schema, run_pk, status=summary["status"],
                         failed_checks=summary["failed_checks"], summary=summary)
    from migration_engine.consistency.suites import data_docs_index

    if kind == "full":
        summary["data_docs"] = str(data_docs_index(cfg))
    log.info("consistency run %s: %s (%d checks, failed: %s, warnings: %s)", run_pk, summary["status"].upper(),
             summary["checked"], summary["failed_checks"] or "none", summary["warnings"] or "none")
    return summary


def describe_failure(summary: dict[str, Any], max_keys: int) -> str:
    """Counts and the first offending keys of every failing check, one line each."""
    lines = []
    if summary.get("message"):
        lines.append(summary["message"])
    for c in summary.get("checks", []):
        if c["status"] == "passed":
            continue
        counts = ", ".join(f"{k}={v}" for k, v in (c.get("counts") or {}).items() if v) or c["status"]
        keys = "; ".join(f"{k}: {', '.join(map(str, v[:max_keys]))}" for k, v in (c.get("sample") or {}).items())
        line = f"- {c['name']} ({c['kind']}, {c['status']}): {counts}"
        if c.get("old_count") is not None or c.get("new_count") is not None:
            line += f" [old {c.get('old_count')} / new {c.get('new_count')}]"
        if keys:
            line += f" -- first keys: {keys}"
        elif c["status"] == "error" or not c.get("counts"):
            line += f" -- {c.get('message', '')}"
        lines.append(line)
    return "\n".join(lines)


def verdict(cfg: MigrationConfig, summary: dict[str, Any] | None) -> dict[str, Any]:
    if not summary:
        raise ConsistencyCheckFailed("no consistency summary: the run did not finish (see upstream task logs)")
    if summary["status"] != "passed":
        raise ConsistencyCheckFailed(
            f"consistency run {summary.get('run_pk')} {summary['status']}: "
            f"{len(summary['failed_checks'])} of {summary['checked']} checks did not pass\n"
            + describe_failure(summary, cfg.consistency.max_reported_keys))
    log.info("consistency run %s passed: all %d checks", summary.get("run_pk"), summary["checked"])
    return {"run_pk": summary.get("run_pk"), "status": "passed"}


def record_validation(cfg: MigrationConfig, gate_result: dict[str, Any] | None,
                      verdict_result: dict[str, Any] | None) -> dict[str, Any]:
    """Phase 4 passed: write it to the audit ledger (gate figures + consistency run id)."""
    from airflow.sdk import get_current_context

    from migration_engine import control

    ctx = get_current_context()
    ti = ctx.get("ti")
    figures = (gate_result or {}).get("figures") or {}
    details = {"shadow_reads": {k: figures.get(k) for k in ("reads_compared", "mismatches", "mismatch_pct",
                                                             "window", "cohorts") if k in figures},
               "shadow_gate_result_id": (gate_result or {}).get("gate_result_id"),
               "consistency_run": (verdict_result or {}).get("run_pk"),
               "dag_id": getattr(ti, "dag_id", None), "run_id": ctx.get("run_id")}
    with _control(cfg) as conn:
        audit_id, at = control.audit(conn, cfg.control_schema, actor=f"airflow:{details['dag_id']}",
                                     action="phase4_validated", target=cfg.name, details=details,
                                     reason="shadow-read gate passed and the full consistency run passed")
    log.info("phase 4 validated (audit entry %s at %s): %s", audit_id, at, details)
    return {"audit_id": audit_id, **details}


def enable_shadow_reads(cfg: MigrationConfig, pct: int) -> dict[str, Any]:
    """Phase 4 (seed 4.1): set ``shadow_read_pct`` so the application compares reads (audited, idempotent).

    Nothing else turns shadow reads on, and the shadow-read gate waits for comparisons the application
    only makes while this flag is above 0. Phase 6 turns it off before archiving the old tables.
    """
    from airflow.sdk import get_current_context

    from migration_engine.control import ensure_flag

    ti = get_current_context().get("ti")
    dag_id = getattr(ti, "dag_id", None)
    context = {"dag_id": dag_id, "run_id": getattr(ti, "run_id", None), "task_id": getattr(ti, "task_id", None)}
    with _control(cfg) as conn:
        change = ensure_flag(conn, cfg.control_schema, "shadow_read_pct", pct, actor=f"airflow:{dag_id}",
                             context=context, reason=f"phase 4 shadow reads: compare {pct}% of reads (seed 4.1)")
    out = {"shadow_read_pct": pct, "changed": change is not None,
           "was": change.old_value if change else pct}
    log.info("shadow_read_pct = %s (%s)", pct, f"changed from {out['was']}" if change else "already set")
    return out
