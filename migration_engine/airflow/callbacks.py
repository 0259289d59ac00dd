"""Airflow task callbacks that page Slack: they read the callback context, the engine alerts.

``default_args`` of every DAG (``migration_engine.airflow.dags``) wires them at task level; a
notifier as the DAG-level ``on_failure_callback`` crashes under ``dag.test()`` in 3.3, and plain
functions also work DAG-level (no task: the message names the DAG run). None of them ever raises:
a callback must not mask the task's own failure, nor fail a task that succeeded.
"""

from __future__ import annotations

import logging
from typing import Any

from migration_engine import alerts

log = logging.getLogger(__name__)


def _attr(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - properties of a half-built context may raise
        return None


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), None)


def _get(context: Any, key: str) -> Any:
    try:
        return context.get(key)
    except Exception:  # noqa: BLE001
        return None


def _task_event(context: Any) -> dict[str, Any]:
    """The fields of ``alerts.task_alert`` from a callback context (any of them may be missing)."""
    ti = _get(context, "ti") or _get(context, "task_instance")
    dag, task, dag_run = _get(context, "dag"), _get(context, "task"), _get(context, "dag_run")
    return {
        "dag_id": _first(_attr(ti, "dag_id"), _attr(dag, "dag_id"), _attr(dag_run, "dag_id"), _get(context, "dag_id")),
        "task_id": _first(_attr(ti, "task_id"), _attr(task, "task_id"), _get(context, "task_id")),
        "run_id": _first(_get(context, "run_id"), _attr(ti, "run_id"), _attr(dag_run, "run_id")),
        "try_number": _attr(ti, "try_number"),
        "max_tries": _attr(ti, "max_tries"),
        "map_index": _attr(ti, "map_index"),
        "error": _first(_get(context, "exception"), _get(context, "reason")),
        "log_url": _attr(ti, "log_url") if ti is not None else None,
    }


def task_failure_callback(context: Any) -> None:
    """``on_failure_callback``: a critical alert naming DAG, task, run, try and the exception."""
    try:
        alerts.task_alert("critical", "failed", "task_failure", **_task_event(context))
    except Exception as exc:  # noqa: BLE001 - a callback must never mask the task's own failure
        log.error("alerts: failure callback could not alert: %s", alerts.describe_error(exc))


def task_retry_callback(context: Any) -> None:
    """``on_retry_callback``: a warning (no page) that a task failed and will be retried."""
    try:
        alerts.task_alert("warning", "is retrying", "task_retry", **_task_event(context))
    except Exception as exc:  # noqa: BLE001
        log.error("alerts: retry callback could not alert: %s", alerts.describe_error(exc))


def task_success_callback(context: Any) -> None:
    """``on_success_callback``: resolve the task's open failure/retry alerts."""
    try:
        ti = _get(context, "ti") or _get(context, "task_instance")
        alerts.resolve_task_alerts(_attr(ti, "dag_id"), _attr(ti, "task_id"), _attr(ti, "map_index"),
                                   _first(_get(context, "run_id"), _attr(ti, "run_id")))
    except Exception as exc:  # noqa: BLE001 - a success callback must never fail the task
        log.warning("alerts: success callback could not resolve alerts: %s", alerts.describe_error(exc))
