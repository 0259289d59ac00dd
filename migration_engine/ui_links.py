"""Links into the Airflow 3 UI, shared by Slack alerts and the dashboard (no Airflow import)."""

from __future__ import annotations

from urllib.parse import quote


def ui_path(dag_id: str, run_id: str | None = None, task_id: str | None = None,
            map_index: int | None = None) -> str:
    """``/dags/{dag_id}[/runs/{run_id}[/tasks/{task_id}[/mapped/{i}]]]``, each part URL-quoted."""
    path = f"/dags/{quote(dag_id, safe='')}"
    if run_id:
        path += f"/runs/{quote(run_id, safe='')}"
        if task_id:
            path += f"/tasks/{quote(task_id, safe='')}"
            if map_index is not None and map_index >= 0:
                path += f"/mapped/{map_index}"
    return path
