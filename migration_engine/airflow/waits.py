"""What every deferred wait's operator shares: retries >= 1, and a retry that resumes the wait.

Airflow 3.3.2 can fail a deferred task spuriously right after it defers (apache/airflow #67287 /
#72716; see docs/architecture.md "Resilient waits"). So gates, read-rollout holds and recovery
watches default to :data:`WAIT_RETRIES` retries and refuse fewer than one; decisions that a retry
cannot change (a critical gate, a rolled-back rollout) raise ``AirflowFailException`` and are not
retried. On a retry the wait continues where it was: :func:`resume` reads the first try's record
back (``migration_engine.gates.resume``) - same deadline, same hold end.
"""

from __future__ import annotations

from typing import Any

from migration_engine.gates import resume as engine_resume

WAIT_RETRIES = 2


def wait_retries(task_id: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Default ``retries`` to WAIT_RETRIES; a wait with fewer than one retry is a config error."""
    kwargs.setdefault("retries", WAIT_RETRIES)
    if kwargs["retries"] is None or int(kwargs["retries"]) < 1:
        raise ValueError(f"{task_id}: a deferred wait needs retries >= 1 (got {kwargs['retries']!r}): Airflow 3.3.2 "
                         "can fail a deferred task spuriously, and a retry resumes the wait where it was")
    return kwargs


def resume(conn, schema: str, task, ti, *, kind: str, fresh: dict[str, Any], actor: str,
           reason: str = "") -> engine_resume.Wait:
    """Start this try's wait, or continue the one an earlier try of the same series started."""
    first = engine_resume.first_try(try_number=ti.try_number, max_tries=ti.max_tries, retries=task.retries)
    wait = engine_resume.start_or_resume(
        conn, schema, kind=kind, dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
        try_number=ti.try_number, first=first, fresh=fresh, actor=actor, reason=reason)
    if wait.resumed:
        task.log.warning("try %s resumes the %s started at %s (try %s of this series): %s", ti.try_number, kind,
                         wait.started_at.isoformat(timespec="seconds"), first, wait.details)
    return wait
