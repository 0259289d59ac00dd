"""Escalation of the hourly consistency run: page once, update while it persists, then resolve.

Uses the deduplication of ``migration_engine.alerts`` (``send_alert(..., dedup_key=, conn=)`` /
``resolve_alert``; state in the control schema's ``alerts`` table). One key per migration
(``consistency:<config name>``): a failing run pages the critical channel with counts and the first
``max_reported_keys`` offending keys; later failing runs edit that same message (latest counts and
keys, occurrence count) instead of paging again; the first passing run marks it resolved and posts
"Resolved" in its thread. A run that fails after a resolution pages again.

:func:`escalate_run` reads the verdict of one DAG run's consistency run from the control tables
(so it also reports a run whose tasks crashed). The hourly DAG's failure callback, which keeps the
failures this escalation reports from paging a second time, lives in the Airflow layer
(``migration_engine.airflow.consistency.hourly_failure_callback``).
"""

from __future__ import annotations

import logging
from typing import Any

from migration_engine.config import MigrationConfig

log = logging.getLogger(__name__)


# The dashboard plugin serves the Data Docs here, behind the Airflow login (migration_engine.dashboard:
# URL_PREFIX + DATA_DOCS_PATH; the dashboard imports this package, so the path is repeated, and a test
# keeps the two equal).
DATA_DOCS_ROUTE = "/migration/data-docs/"


def data_docs_link(cfg: MigrationConfig) -> str:
    """Where on-call opens the latest Data Docs per suite: the Airflow UI's host, not a worker's file."""
    return cfg.slack.airflow_base_url.rstrip("/") + DATA_DOCS_ROUTE


def dedup_key(cfg: MigrationConfig) -> str:
    return f"consistency:{cfg.name}"


def alert_content(cfg: MigrationConfig, summary: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Title, text and figures of the page for a failing run (pure)."""
    from migration_engine.consistency.runs import describe_failure

    failing = summary.get("failed_checks") or []
    title = f"Consistency check failed: {len(failing)} of {summary.get('checked', '?')} checks ({cfg.name})"
    text = describe_failure(summary, cfg.consistency.max_reported_keys)
    if summary.get("data_docs"):
        text += f"\nData Docs (latest per suite): {data_docs_link(cfg)}"
    figures: dict[str, Any] = {"run": summary.get("run_pk"), "status": summary.get("status"),
                               "failing checks": ", ".join(failing) or "-"}
    for c in summary.get("checks", []):
        if c["status"] != "passed":
            figures[c["name"]] = ", ".join(f"{k}={v}" for k, v in (c.get("counts") or {}).items() if v) or c["status"]
    return title, text, figures


def escalate(cfg: MigrationConfig, summary: dict[str, Any] | None, *, conn, dag_id: str | None = None,
             run_id: str | None = None) -> dict[str, Any]:
    """Page / update on failure, resolve on success. ``conn``: control DB connection (dedup state)."""
    from migration_engine.alerts import resolve_alert, send_alert

    key = dedup_key(cfg)
    if summary and summary.get("status") == "passed":
        res = resolve_alert(key, f"all {summary.get('checked')} consistency checks passed in run "
                                 f"{summary.get('run_pk')}", conn=conn, cfg=cfg)
    else:
        summary = summary or {"status": "error", "checked": "?", "failed_checks": [],
                              "message": "the consistency run did not finish (see the task logs)"}
        title, text, figures = alert_content(cfg, summary)
        res = send_alert("critical", title, text, figures=figures, dag_id=dag_id, run_id=run_id, cfg=cfg,
                         dedup_key=key, conn=conn)
    log.info("consistency alert %s: %s (ok=%s, occurrences=%s)", key, res.action, res.ok, res.occurrences)
    return {"action": res.action, "ok": res.ok, "occurrences": res.occurrences, "error": res.error}


def escalate_run(cfg: MigrationConfig, *, kind: str, dag_id: str | None, run_id: str | None) -> dict[str, Any]:
    """Escalate the consistency run of one DAG run (its summary from ``consistency_runs``).

    When the control database cannot be reached the page still goes out, without deduplication
    (and without the run's figures): an unreachable control database is itself worth a page.
    """
    from migration_engine import db
    from migration_engine.consistency import store
    from migration_engine.consistency.sessions import APPLICATION_NAME

    try:
        conn = db.connect(cfg.connections.legacy, application_name=f"{APPLICATION_NAME}-alerts")
    except Exception as exc:  # noqa: BLE001 - page anyway, without deduplication
        log.error("control database unreachable (%s); alerting without deduplication", exc)
        return escalate(cfg, None, conn=None, dag_id=dag_id, run_id=run_id)
    try:
        run = store.run_of_dag_run(conn, cfg.control_schema, dag_id=dag_id, run_id=run_id, kind=kind)
        summary = run.summary if run is not None and run.finished_at is not None else None
        return escalate(cfg, summary, conn=conn, dag_id=dag_id, run_id=run_id)
    finally:
        conn.close()
