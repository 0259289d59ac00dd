"""A wait resumed where it was after its task was retried: one record per wait, read back on retry.

Why: Airflow 3.3.2 can mark a deferred task failed right after it defers (a stale executor event,
apache/airflow #67287 / #72716, not fixed in 3.3.2). Gates, read-rollout holds and recovery watches
therefore run with ``retries >= 1`` - and a retry must not start the wait over: a 4-hour hold that
restarted on every spurious failure would never end, and a gate's deadline would slide.

So the first try of a wait appends ``wait.started`` to the audit ledger (what the wait is: its
deadline or hold end, the snapshot it judges from, ...), keyed by ``<kind>:<dag>:<run>:<task>`` and
the *series* of tries it belongs to. A retry in the same series reads that entry back and continues
with the same values (and appends ``wait.resumed``); a task cleared by an operator starts a new
series (Airflow raises ``max_tries`` on clear), so it waits afresh - that is what a clear means.

The series is ``first_try = max_tries - retries + 1`` (the formula Airflow's task runner uses for
the same question); pure, tested without Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migration_engine import control, sqlfiles

STARTED = "wait.started"
RESUMED = "wait.resumed"


def first_try(*, try_number: int, max_tries: int, retries: int) -> int:
    """The first try number of the series ``try_number`` belongs to (1 for a task never cleared)."""
    first = int(max_tries) - int(retries) + 1
    return first if 1 <= first <= int(try_number) else int(try_number)


def target(kind: str, dag_id: str | None, run_id: str | None, task_id: str | None) -> str:
    return f"{kind}:{dag_id}:{run_id}:{task_id}"


@dataclass(frozen=True)
class Wait:
    details: dict[str, Any]  # what the wait is (the fresh values, or those read back)
    started_at: datetime  # when the wait started (the first try of the series)
    resumed: bool  # True: a retry continues a wait a previous try started


def start_or_resume(conn, schema: str, *, kind: str, dag_id: str | None, run_id: str | None,
                    task_id: str | None, try_number: int, first: int, fresh: dict[str, Any], actor: str,
                    reason: str = "") -> Wait:
    """Continue this series' wait if a previous try started one, else record ``fresh`` as its start.

    Commits. ``fresh`` must be JSON-able (ISO strings for times).
    """
    key = target(kind, dag_id, run_id, task_id)
    row = None
    if try_number > first:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "gates/wait_started.sql", {"schema": schema},
                         {"target": key, "first_try": str(first)})
            row = cur.fetchone()
        conn.rollback()
    if row is not None:
        details, at = row
        kept = {k: v for k, v in details.items() if k not in ("first_try", "try_number")}
        control.audit(conn, schema, actor=actor, action=RESUMED, target=key,
                      details={**kept, "first_try": first, "try_number": try_number,
                               "started_try": details.get("try_number")},
                      reason=f"try {try_number} continues the wait started by try {details.get('try_number')}")
        return Wait(kept, at, True)
    _, at = control.audit(conn, schema, actor=actor, action=STARTED, target=key,
                          details={**fresh, "first_try": first, "try_number": try_number}, reason=reason)
    return Wait(dict(fresh), at, False)
