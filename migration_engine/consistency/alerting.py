"""Escalation of the hourly consistency run: page once, update while it persists, then resolve.

Uses the deduplication of ``migration_engine.alerts`` (``send_alert(..., dedup_key=, conn=)`` /
``resolve_alert``; state in the control schema's ``alerts`` table). One key per migration
(``consistency:<config name>``): a failing run pages the critical channel with counts and the first
``max_reported_keys`` offending keys; later failing runs edit that same message (latest counts and
keys, occurrence count) instead of paging again; the first passing run marks it resolved and posts
"Resolved" in its thread. A run that fails after a resolution pages again.

The hourly DAG's tasks use :func:`hourly_failure_callback`: failures that the ``escalate`` task
already reports (a failed check, a crashed check task, the verdict) do not send a second,
undeduplicated page; any other task failure goes to the normal failure callback.
"""

from __future__ import annotations

import logging
from typing import Any

from migration_engine.config import MigrationConfig
from migration_engine.consistency.results import ConsistencyCheckFailed

log = logging.getLogger(__name__)

# Tasks of migration_consistency_hourly whose failures the escalate task reports.
ESCALATED_TASKS = frozenset({"start_run", "plan_checks", "run_check", "run_suites", "finish_run", "verdict"})


def dedup_key(cfg: MigrationConfig) -> str:
    return f"consistency:{cfg.name}"


def alert_content(cfg: MigrationConfig, summary: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """Title, text and figures of the page for a failing run (pure)."""
    from migration_engine.consistency.tasks import describe_failure

    failing = summary.get("failed_checks") or []
    title = f"Consistency check failed: {len(failing)} of {summary.get('checked', '?')} checks ({cfg.name})"
    text = describe_failure(summary, cfg.consistency.max_reported_keys)
    if summary.get("data_docs"):
        text += f"\nData Docs: {summary['data_docs']}"
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


def hourly_failure_callback(context) -> None:
    """Skip the generic page for failures that ``escalate`` reports (deduplicated); never raises."""
    try:
        exc = context.get("exception")
        ti = context.get("ti") or context.get("task_instance")
        task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", None)
        if isinstance(exc, ConsistencyCheckFailed) or task_id in ESCALATED_TASKS:
            log.info("failure of %s is reported by the escalate task (deduplicated); no separate page", task_id)
            return
    except Exception as err:  # noqa: BLE001 - fall through to the normal callback
        log.warning("hourly_failure_callback could not inspect the context: %s", err)
    from migration_engine.airflow.dags import failure_callback

    failure_callback(context)
