"""The running task, as the engine needs it: who acts (for the ledger), ids, Params, dry-run."""

from __future__ import annotations

from typing import Any

from airflow.sdk import get_current_context


def task_context() -> tuple[str, dict[str, Any]]:
    """(actor, context) for audit entries of the running Airflow task."""
    ctx = get_current_context()
    ti = ctx["ti"]
    return f"airflow:{ti.dag_id}", {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id}


def params() -> dict[str, Any]:
    """The run's Params (trigger form values merged over defaults)."""
    return dict(get_current_context()["params"])


def dry_run() -> bool:
    return bool(params().get("dry_run", False))
