"""The dry-run fork every phase DAG shares: with the ``dry_run`` Param the run takes the plan task only.

Why a branch and not a flag inside each task: a dry run must change nothing, and the real path is
full of things that write (gate evaluations in ``gate_results``, approval requests and their ledger
entries, flag flips). Skipping that path is the one way to be sure; the plan task prints exactly what
the steps would send (``run_steps(..., dry=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence

from migration_engine.airflow.context import dry_run


def choose(plan_task: str, run_tasks: str | Sequence[str]) -> str | list[str]:
    """Body of a ``@task.branch``: the plan task on a dry run, else the first task(s) of the real path."""
    if dry_run():
        return plan_task
    return run_tasks if isinstance(run_tasks, str) else list(run_tasks)


def not_dry_run() -> bool:
    """For ``@task.short_circuit``: stop a DAG before its approval on a dry run (plan only)."""
    return not dry_run()
