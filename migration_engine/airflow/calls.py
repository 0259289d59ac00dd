"""Engine calls that need more of the running task than ``on_legacy`` passes: the dry-run Param
and named Params of the run's trigger form.

Why a separate module: ``tasks.on_legacy`` is the shared core; steps that are not
:class:`~migration_engine.steps.Step` s (pre-checks, plans, completion entries) still must honour
``dry_run`` (write nothing) and read their Params here, so DAG files stay one call per task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from migration_engine.airflow.context import dry_run, params, task_context
from migration_engine.airflow.dags import config
from migration_engine.airflow.tasks import outcome


def on_legacy_run(fn: Callable[..., Any], *, param_names: Sequence[str] = ()) -> Any:
    """``fn(conn, cfg, actor=, context=, dry_run=, **{name: Param})`` on the legacy DB as this task.

    Refusals fail the task at once (``outcome``); ``fn`` must change nothing when ``dry_run``.
    """
    from migration_engine import db

    cfg = config()
    actor, ctx = task_context()
    values = params()
    with outcome(), db.connection(cfg.connections.legacy) as conn:
        return fn(conn, cfg, actor=actor, context=ctx, dry_run=dry_run(),
                  **{name: values.get(name) for name in param_names})


def not_dry_run() -> bool:
    """For ``@task.short_circuit``: stop a DAG before its approval on a dry run (plan only)."""
    return not dry_run()
