"""The performance sampler's tasks (dags/migration_db_performance_sampler.py): one layer call each."""

from __future__ import annotations

from typing import Any


def sample() -> dict[str, Any]:
    """One sample of both databases (``perf.sampler.PerfSample``); a dry run reads, plans and writes nothing."""
    from migration_engine.airflow.tasks import run_steps
    from migration_engine.perf.sampler import perf_steps

    return run_steps(perf_steps)


def emit_metrics() -> dict[str, Any]:
    from migration_engine.airflow.metrics import emit_migration_metrics

    return emit_migration_metrics()
