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


def _paged_elsewhere(context: Any) -> bool:
    """The task (``page_on_failure=False``) or its error (``already_paged``) has its own page."""
    if _attr(_get(context, "task"), "page_on_failure") is False:
        return True
    exc = _get(context, "exception")
    return any(_attr(e, "already_paged") is True for e in (exc, _attr(exc, "__cause__")) if e is not None)


def task_failure_callback(context: Any) -> None:
    """``on_failure_callback``: a critical alert naming DAG, task, run, try and the exception."""
    try:
        if _paged_elsewhere(context):
            log.info("alerts: failure already paged by the migration's own alert; no task-failure page")
            return
        alerts.task_alert("critical", "failed", "task_failure", **_task_event(context))
    except Exception as exc:  # noqa: BLE001 - a callback must never mask the task's own failure
        log.error("alerts: failure callback could not alert: %s", alerts.describe_error(exc))


def task_retry_callback(context: Any) -> None:
    """``on_retry_callback``: a warning (no page) that a task failed and will be retried."""
    try:
        if _paged_elsewhere(context):
            return
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


# --- Deadline Alerts (run in the triggerer: AsyncCallback; the DAG header sets them) -----------
def _dag_run_fields(context: Any) -> dict[str, Any]:
    """The run named by a deadline callback's context (``{"dag_run": {...}, "deadline": {...}}``)."""
    run = _get(context, "dag_run") if context is not None else None
    run = run if isinstance(run, dict) else {}
    deadline = _get(context, "deadline") if context is not None else None
    deadline = deadline if isinstance(deadline, dict) else {}
    return {"dag_id": run.get("dag_id"), "run_id": _first(run.get("dag_run_id"), run.get("run_id")),
            "state": run.get("state"), "queued_at": run.get("queued_at"), "start_date": run.get("start_date"),
            "deadline_time": deadline.get("deadline_time")}


def deadline_missed_sync(limit_seconds: float | None, context: Any) -> str:
    """Page that a run missed its deadline; returns the alert's action. Never raises."""
    from datetime import timedelta

    from migration_engine import deadlines

    try:
        f = _dag_run_fields(context)
        if not f["dag_id"]:
            log.error("deadline: missed, but the callback context names no DAG run: %r", context)
            return "failed"
        run = deadlines.OverdueRun(f["dag_id"], f["run_id"], f["state"], deadlines.parse_ts(f["queued_at"]),
                                   deadlines.parse_ts(f["start_date"]), deadlines.parse_ts(f["deadline_time"]))
        limit = timedelta(seconds=limit_seconds) if limit_seconds else None
        result = deadlines.page_overdue(None, run, limit)
        log.info("deadline: %s run %s missed its deadline; page %s", run.dag_id, run.run_id, result.action)
        return result.action
    except Exception as exc:  # noqa: BLE001 - a deadline callback must page or log, never crash
        log.error("deadline: could not page the missed deadline: %s", alerts.describe_error(exc))
        return "failed"


async def deadline_missed(limit_seconds: float | None = None, context: Any = None) -> str:
    """``AsyncCallback`` of a run's "overdue" Deadline Alert: a critical page, deduplicated per DAG.

    The triggerer awaits it; the Slack and control-DB work is blocking, so it runs in a thread
    (where the Task SDK's connection lookup works too).
    """
    import asyncio

    return await asyncio.to_thread(deadline_missed_sync, limit_seconds, context)


def _dagrun_state(dag_id: str, run_id: str) -> str | None:
    """The run's state through the Task SDK (the triggerer answers it); None if unknown."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        state = RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id)
    except Exception as exc:  # noqa: BLE001 - e.g. the run was deleted
        log.warning("deadline watch: state of %s/%s unavailable: %s", dag_id, run_id, alerts.describe_error(exc))
        return None
    return str(getattr(state, "value", state))


def watch_once(dag_id: str, run_id: str, state: str | None) -> dict[str, Any]:
    """One look at a run: approval reminders due, and - once the run ended - its overdue page resolved."""
    from migration_engine import deadlines
    from migration_engine.config import load_config

    out: dict[str, Any] = {"sent": [], "resolved": []}
    try:
        cfg = load_config()
        conn = alerts.control_connection(cfg)
        if conn is None:
            log.warning("deadline watch: control database unreachable; no reminders for %s/%s this time",
                        dag_id, run_id)
            return out
        try:
            swept = deadlines.sweep_approval_reminders(cfg, conn, dag_id=dag_id, run_id=run_id)
            out = {"sent": swept.sent, "resolved": swept.resolved}
            if state in deadlines.FINISHED_STATES:
                result = deadlines.resolve_overdue(cfg, dag_id, run_id, state, conn=conn)
                if result.action == "resolved":
                    out["resolved"].append(deadlines.overdue_key(dag_id))
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - the watch must keep watching
        log.error("deadline watch: %s/%s: %s", dag_id, run_id, alerts.describe_error(exc))
    return out


WATCH_MAX_UNKNOWN = 10  # consecutive polls without the run's state (deleted run): stop watching


async def run_watch(poll_seconds: float = 60, context: Any = None) -> str:
    """``AsyncCallback`` of the "watch" Deadline Alert, fired as soon as a run is queued.

    Lives in the triggerer for as long as the run does (no worker slot): every ``poll_seconds``
    it sends the approval reminders that are due (``deadlines.approval_reminders``) and, when the
    run ends, resolves its overdue page. A restarted triggerer runs it again from the start; the
    alerts table keeps it from sending anything twice.

    Returns a one-line summary: the triggerer stores the return value in a text column (a dict
    there crashes the whole triggerer in 3.3.2).
    """
    import asyncio

    from migration_engine import deadlines

    f = _dag_run_fields(context)
    dag_id, run_id = f["dag_id"], f["run_id"]
    if not dag_id or not run_id:
        log.error("deadline watch: the callback context names no DAG run: %r", context)
        return "not watched: the callback context names no DAG run"
    totals: dict[str, list] = {"sent": [], "resolved": []}
    unknown = 0
    while True:
        state = await asyncio.to_thread(_dagrun_state, dag_id, run_id)
        unknown = unknown + 1 if state is None else 0
        out = await asyncio.to_thread(watch_once, dag_id, run_id, state)
        for key in totals:
            totals[key].extend(out.get(key, []))
        if state in deadlines.FINISHED_STATES or unknown >= WATCH_MAX_UNKNOWN:
            return (f"watched {dag_id}/{run_id} until {state or 'its state was unknown'}; "
                    f"sent {sorted(totals['sent'])}; resolved {sorted(totals['resolved'])}")
        await asyncio.sleep(max(float(poll_seconds), 1.0))
