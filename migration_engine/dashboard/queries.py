"""Read what the dashboard shows from the control schema, in one read-only transaction.

Why aggregation happens in SQL: the stats tables hold one row per minute, entity and instance
(a month is 43 200 buckets per series). Every query here filters on ``bucket`` / ``at`` /
``evaluated_at`` ranges the control-schema indexes cover and returns at most one row per hour (or
per minute of the last hour), so the page costs the same on day 1 and day 30.

The dashboard shares the application's database, so it runs read-only with a short
``statement_timeout``: a slow dashboard must never hold anything the application needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_engine import control, sqlfiles
from migration_engine.errors import MigrationError

CONSISTENCY_RUNS_TABLE = "consistency_runs"
# Timestamp columns the dashboard orders consistency runs by, best first.
# started_at first: it is set when a run starts (finished_at stays NULL while it runs).
CONSISTENCY_TIME_COLUMNS = (
    "started_at", "finished_at", "completed_at", "ended_at", "checked_at", "run_at", "evaluated_at",
    "created_at", "at",
)
STATEMENT_TIMEOUT = "10s"
ROLLING_WINDOW = timedelta(hours=24)
RECENT_WINDOW = timedelta(hours=1)
HOURS = 24
MINUTES = 60
MAX_AUDIT_ROWS = 25
# routine ledger actions (about one a minute per range while a copy runs): summarised, not listed
ROUTINE_ACTIONS = r"_(progress|throttle)$"
MAX_MISMATCH_ROWS = 10
MAX_ALERT_ROWS = 20
MAX_CONSISTENCY_ROWS = 200
MAX_FAILED_RUNS = 20


class DashboardUnavailable(MigrationError):
    """The dashboard cannot be built (no control schema, database unreachable, bad config)."""


@dataclass(frozen=True)
class Windows:
    """The time ranges every query uses, derived from one ``now`` so the figures agree."""

    now: datetime
    window_start: datetime   # rolling 24 h
    window_end: datetime     # exclusive; one minute ahead so the current minute's bucket counts
    recent_start: datetime   # last hour
    hours_start: datetime    # first of the 24 hourly chart buckets (UTC hours)
    minutes_start: datetime  # first of the 60 per-minute chart buckets

    @classmethod
    def at(cls, now: datetime) -> Windows:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        now = now.astimezone(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        minute = now.replace(second=0, microsecond=0)
        return cls(
            now=now,
            window_start=now - ROLLING_WINDOW,
            window_end=now + timedelta(minutes=1),
            recent_start=now - RECENT_WINDOW,
            hours_start=hour - timedelta(hours=HOURS - 1),
            minutes_start=minute - timedelta(minutes=MINUTES - 1),
        )

    def hour_slots(self) -> list[datetime]:
        return [self.hours_start + timedelta(hours=i) for i in range(HOURS)]

    def minute_slots(self) -> list[datetime]:
        return [self.minutes_start + timedelta(minutes=i) for i in range(MINUTES)]


def _rows(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _query(cur, name: str, schema: str, **params: Any) -> list[dict[str, Any]]:
    sqlfiles.run(cur, f"dashboard/{name}.sql", {"schema": schema}, params)
    return _rows(cur)


def consistency_time_column(columns: list[tuple[str, str]]) -> str | None:
    """The column consistency runs are ordered by: the first known timestamp column present."""
    types = {name: data_type for name, data_type in columns}
    for name in CONSISTENCY_TIME_COLUMNS:
        if types.get(name, "").startswith("timestamp"):
            return name
    return None


def _consistency(cur, schema: str, w: Windows) -> dict[str, Any]:
    sqlfiles.run(cur, "dashboard/table_columns.sql",
                 params={"schema": schema, "table_name": CONSISTENCY_RUNS_TABLE})
    columns = cur.fetchall()
    if not columns:
        return {"available": False, "note": "no consistency runs yet", "runs": []}
    time_column = consistency_time_column(columns)
    if time_column is None:
        return {
            "available": False,
            "note": (f"{schema}.{CONSISTENCY_RUNS_TABLE} has no timestamp column the dashboard knows "
                     f"(one of {', '.join(CONSISTENCY_TIME_COLUMNS)})"),
            "runs": [],
        }
    sqlfiles.run(cur, "dashboard/consistency_recent.sql",
                 {"schema": schema, "table": CONSISTENCY_RUNS_TABLE, "time_column": time_column},
                 {"window_start": w.window_start, "max_rows": MAX_CONSISTENCY_ROWS})
    runs = [row[0] for row in cur.fetchall()]
    if not runs:
        sqlfiles.run(cur, "dashboard/consistency_any.sql", {"schema": schema, "table": CONSISTENCY_RUNS_TABLE})
        if not cur.fetchone()[0]:
            return {"available": False, "note": "no consistency runs yet", "runs": []}
    return {"available": True, "note": "" if runs else "no consistency runs in the last 24 h",
            "time_column": time_column, "runs": runs}


def run_failures(cur, schema: str, failed: list[dict[str, Any]], now: datetime) -> dict[str, dict[str, Any]]:
    """Why each failed run failed, from what the engine recorded during it (``phases.failure_reason``):
    the ledger's failure entries of the run, and the failure alerts of its failed tasks."""
    from migration_engine.alerts import callback_dedup_key

    out: dict[str, dict[str, Any]] = {}
    for run in failed[:MAX_FAILED_RUNS]:
        since = run.get("start_date") or now - ROLLING_WINDOW
        audit = _query(cur, "run_failure_audit", schema, since=since, until=run.get("end_date") or now,
                       dag_id=run["dag_id"], run_id=run["run_id"])
        keys = {callback_dedup_key("task_failure", run["dag_id"], t): t for t in run["task_ids"]}
        alerts = []
        if keys:
            for row in _query(cur, "task_failure_alerts", schema, keys=list(keys)):
                alerts.append({**row, "task_id": keys[row["dedup_key"]]})
        out[run["dag_id"]] = {"audit": audit, "alerts": alerts}
    return out


def fetch(conn, schema: str, now: datetime, failed_runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as plain rows (see ``model.build``).

    ``failed_runs``: the latest DAG runs that failed (``phases.failed_runs``); their reasons are read.

    ``conn`` must be a fresh psycopg2 connection (its session is switched to read-only); it is
    left with its transaction rolled back.
    """
    w = Windows.at(now)
    # One snapshot for every figure on the page, and no way to write by mistake.
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "common/set_setting.sql",
                         params={"name": "statement_timeout", "value": STATEMENT_TIMEOUT, "is_local": True})
            if not control.control_schema_exists(conn, schema):
                raise DashboardUnavailable(
                    f'control schema "{schema}" does not exist in this database yet; run the '
                    "migration_setup DAG first"
                )
            sqlfiles.run(cur, "control/flags_get.sql", {"schema": schema})
            flags = _rows(cur)
            day = {"window_start": w.window_start, "window_end": w.window_end, "recent_start": w.recent_start}
            hours = {"window_start": w.hours_start, "window_end": w.window_end}
            return {
                "windows": w,
                "flags": flags,
                "dual_write_hourly": _query(cur, "dual_write_hourly", schema, **hours),
                "dual_write_minutely": _query(cur, "dual_write_minutely", schema,
                                              window_start=w.minutes_start, window_end=w.window_end),
                "dual_write_by_entity": _query(cur, "dual_write_by_entity", schema, **day),
                "shadow_hourly": _query(cur, "shadow_hourly", schema, **hours),
                "shadow_by_cohort": _query(cur, "shadow_by_cohort", schema,
                                           window_start=w.window_start, window_end=w.window_end),
                "shadow_mismatches": _query(cur, "shadow_mismatches_recent", schema, max_rows=MAX_MISMATCH_ROWS),
                "path_hourly": _query(cur, "path_hourly", schema, **hours),
                "path_totals": _query(cur, "path_totals", schema, **day),
                "gates": _query(cur, "gates_latest", schema),
                "steps": _query(cur, "steps_by_phase", schema),
                "alerts": _query(cur, "alerts_open", schema, max_rows=MAX_ALERT_ROWS),
                "audit": _query(cur, "audit_recent", schema, max_rows=MAX_AUDIT_ROWS, routine_actions=ROUTINE_ACTIONS),
                "audit_routine": _query(cur, "audit_routine", schema, since=w.window_start,
                                        max_rows=MAX_AUDIT_ROWS, routine_actions=ROUTINE_ACTIONS),
                "consistency": _consistency(cur, schema, w),
                "run_failures": run_failures(cur, schema, failed_runs or [], w.now),
            }
    finally:
        conn.rollback()
