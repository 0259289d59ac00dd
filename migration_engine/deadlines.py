"""Deadlines that page: an overdue run, and approvals nobody has answered yet (no Airflow imports).

Airflow's Deadline Alerts (set on every migration DAG by the layer's DAG header,
``migration_engine.airflow.dags``) decide *when*: the scheduler notices a run still unfinished
``deadlines.*`` after it was queued and the triggerer runs our callback, which calls in here to
decide *what on-call reads*. Everything goes through the one Slack path (``alerts.send_alert``),
deduplicated in the control schema's ``alerts`` table:

* ``deadline:<dag_id>`` - one open page per DAG: a hung hourly run pages once; a run triggered
  behind it (max_active_runs=1: the scheduler creates no scheduled run meanwhile) that misses its
  deadline too updates that message ("Seen N times") instead of paging again. When a run that
  paged ends, its watcher resolves the page in the thread.
* ``approval_reminder:<dag>.<task>[i]@<run>/<requested epoch>:<pct>`` - one reminder per approval
  request and percentage of its response timeout (``deadlines.approval_reminders``); the last
  percentage pages (critical), earlier ones are warnings. Answered or timed-out requests get their
  open reminders resolved. Reminders read the approval requests the Slack notifier records in
  ``slack_approvals`` (the row is written even when Slack was down).

Nothing here raises into the caller: a deadline callback must page or log, never crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from migration_engine import alerts
from migration_engine.config import HOURLY_DAG_ID

if TYPE_CHECKING:
    from migration_engine.config import MigrationConfig

log = logging.getLogger(__name__)

FINISHED_STATES = frozenset({"success", "failed"})


def _utc(ts: datetime | None) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "unknown"


def human(td: timedelta | None) -> str:
    """``45m``, ``2h 30m``, ``3d 4h``: how long, for people."""
    if td is None:
        return "unknown"
    secs = int(round(td.total_seconds()))
    if secs < 60:
        return f"{secs}s"
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    if not days and not hours and seconds:
        parts.append(f"{seconds}s")
    return " ".join(parts[:2])


def parse_ts(value: Any) -> datetime | None:
    """A timestamp from the callback context (ISO string or datetime), timezone-aware, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        ts = value
    else:
        try:
            ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


# --- overdue runs ----------------------------------------------------------------------------
def overdue_key(dag_id: str) -> str:
    return f"deadline:{dag_id}"


@dataclass(frozen=True)
class OverdueRun:
    """What the deadline callback knows about the run (from Airflow's callback context)."""

    dag_id: str
    run_id: str | None
    state: str | None = None
    queued_at: datetime | None = None
    start_date: datetime | None = None
    deadline_time: datetime | None = None


def overdue_message(run: OverdueRun, limit: timedelta | None, now: datetime | None = None
                    ) -> tuple[str, str, dict[str, Any]]:
    """Title, text (with the next step for on-call) and figures of an overdue-run page."""
    now = now or datetime.now(UTC)
    age = now - run.queued_at if run.queued_at else None
    state = run.state or "unknown"
    if run.dag_id == HOURLY_DAG_ID:
        title = f"Hourly consistency run overdue: {run.dag_id}"
        text = (f"Run `{run.run_id}` has not finished {human(limit)} after it was queued (state *{state}*). "
                f"This DAG runs one run at a time: while this run is unfinished no later hourly run starts "
                f"(the scheduler creates none; a triggered one waits queued), so no consistency checks run.\n"
                f"*Next:* open the run in Airflow and read the log of the task still running (a check "
                f"waiting on a lock or a dead database connection). If it cannot finish, mark the run "
                f"failed: the next hourly run starts and checks everything again. If the run is still "
                f"queued, a run before it holds the slot or the DAG is paused. "
                f"(docs/runbook.md, \"Deadlines\"; limit: deadlines.consistency_hourly)")
    else:
        title = f"Migration run overdue: {run.dag_id}"
        text = (f"Run `{run.run_id}` has not finished {human(limit)} after it was queued (state *{state}*).\n"
                f"*Next:* open the run in Airflow and see which task it is on. A gate or an approval "
                f"waiting is shown as such (answer or check it); a task running without progress in its "
                f"log is hung: look at what it waits for before marking anything failed. If this phase "
                f"legitimately takes longer, raise deadlines.phase_runs.{run.dag_id} "
                f"(docs/runbook.md, \"Deadlines\").")
    figures = {"state": state, "queued at": _utc(run.queued_at), "limit": human(limit),
               "running for": human(age)}
    if run.start_date:
        figures["started at"] = _utc(run.start_date)
    return title, text, figures


def page_overdue(cfg: MigrationConfig | None, run: OverdueRun, limit: timedelta | None,
                 *, now: datetime | None = None) -> alerts.AlertResult:
    """Page on-call (critical) that ``run`` missed its deadline; one open page per DAG."""
    title, text, figures = overdue_message(run, limit, now)
    conn = alerts.control_connection(cfg)
    try:
        return alerts.send_alert("critical", title, text, figures=figures, dag_id=run.dag_id, run_id=run.run_id,
                                 cfg=cfg, dedup_key=overdue_key(run.dag_id) if conn is not None else None,
                                 conn=conn)
    finally:
        if conn is not None:
            conn.close()


def resolve_overdue(cfg: MigrationConfig | None, dag_id: str, run_id: str | None, state: str | None,
                    *, conn) -> alerts.AlertResult:
    """The run ended: close the DAG's open overdue page (a no-op when there is none)."""
    return alerts.resolve_alert(overdue_key(dag_id), f"run {run_id} ended ({state or 'unknown'})", conn=conn,
                                cfg=cfg)


# --- approval reminders ----------------------------------------------------------------------
@dataclass(frozen=True)
class ApprovalRequest:
    """One row of ``slack_approvals`` (an approval task's request)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    approval_point: str
    subject: str
    requested_at: datetime
    expires_at: datetime | None
    decision: str | None
    decided_via: str | None

    @property
    def open(self) -> bool:
        return self.decision is None

    def reminder_key(self, pct: float) -> str:
        where = f"{self.dag_id}.{self.task_id}" + (f"[{self.map_index}]" if self.map_index >= 0 else "")
        return f"approval_reminder:{where}@{self.run_id}/{int(self.requested_at.timestamp())}:{pct:g}"


def due_reminders(request: ApprovalRequest, percents: list[float], now: datetime) -> list[float]:
    """The percentages of the response timeout that have passed while the request is still open and
    not yet timed out (no timeout, no reminders: there is no deadline to remind of)."""
    if not request.open or request.expires_at is None or now >= request.expires_at:
        return []
    total = request.expires_at - request.requested_at
    if total.total_seconds() <= 0:
        return []
    return [p for p in percents if now >= request.requested_at + total * (p / 100)]


def reminder_message(cfg: MigrationConfig, request: ApprovalRequest, pct: float, now: datetime
                     ) -> tuple[str, str, dict[str, Any]]:
    assert request.expires_at is not None
    approvers = cfg.approvers_for(request.approval_point)
    who = ("mentioned above" if approvers else
           "nobody is listed in approvals.approvers for this approval point: answer in Airflow")
    left = request.expires_at - now
    subject = request.subject or request.task_id
    title = f"Approval still unanswered: {subject}"
    text = (f"Approval point `{request.approval_point}` has waited {human(now - request.requested_at)} "
            f"({pct:g}% of its {human(request.expires_at - request.requested_at)} response timeout) with no answer. "
            f"In {human(left)} (at {_utc(request.expires_at)}) it takes the safe default *Reject*: the migration "
            f"does not proceed and this run stops there.\n"
            f"*Next:* an approver answers the request in Slack or in Airflow (Required Actions). Approvers: {who}.")
    figures = {"approval point": request.approval_point, "waiting for": human(now - request.requested_at),
               "times out at": _utc(request.expires_at), "timeout used": f"{pct:g}%"}
    return title, text, figures


def _requests(conn, schema: str, dag_id: str, run_id: str) -> list[ApprovalRequest]:
    from migration_engine import sqlfiles

    with conn.cursor() as cur:
        sqlfiles.run(cur, "deadlines/approvals_of_run.sql", {"schema": schema}, {"dag_id": dag_id, "run_id": run_id})
        rows = cur.fetchall()
    conn.commit()
    return [ApprovalRequest(dag_id, run_id, task_id, int(map_index), point, subject or "", requested_at, expires_at,
                            decision, via)
            for task_id, map_index, point, subject, requested_at, expires_at, decision, via in rows]


def _status(conn, schema: str, key: str) -> str | None:
    """``open``/``resolved`` if the alert key was ever sent, else None."""
    from migration_engine import sqlfiles

    with conn.cursor() as cur:
        sqlfiles.run(cur, "deadlines/alert_seen.sql", {"schema": schema}, {"dedup_key": key})
        row = cur.fetchone()
    conn.commit()
    return row[0] if row else None


@dataclass(frozen=True)
class SweepResult:
    sent: list[str]  # reminder keys sent now
    resolved: list[str]  # reminder keys closed now (request answered or timed out)


def sweep_approval_reminders(cfg: MigrationConfig, conn, *, dag_id: str, run_id: str,
                             now: datetime | None = None) -> SweepResult:
    """Send the reminders that are due for the approval requests of one run, once each; resolve the
    open reminders of requests that are answered or have timed out. ``conn``: the control DB."""
    from migration_engine import control

    now = now or datetime.now(UTC)
    percents = list(cfg.deadlines.approval_reminders)
    schema = cfg.control_schema
    sent: list[str] = []
    resolved: list[str] = []
    if not percents or not control.control_schema_exists(conn, schema):
        conn.rollback()
        return SweepResult(sent, resolved)
    conn.rollback()
    for request in _requests(conn, schema, dag_id, run_id):
        due = due_reminders(request, percents, now)
        if not due:
            if not request.open or (request.expires_at is not None and now >= request.expires_at):
                for pct in percents:
                    key = request.reminder_key(pct)
                    if _status(conn, schema, key) == "open":
                        result = alerts.resolve_alert(key, _closing_note(request), conn=conn, cfg=cfg)
                        if result.action == "resolved":
                            resolved.append(key)
            continue
        # Only the latest step that is due: a watcher that was down sends one reminder, not a burst,
        # and an earlier step is never sent after a later one.
        pct = due[-1]
        key = request.reminder_key(pct)
        if _status(conn, schema, key) is not None:
            continue
        severity = "critical" if pct == percents[-1] else "warning"
        title, text, figures = reminder_message(cfg, request, pct, now)
        result = alerts.send_alert(severity, title, text, figures=figures, dag_id=dag_id, run_id=run_id,
                                   task_id=request.task_id,
                                   map_index=request.map_index if request.map_index >= 0 else None,
                                   cfg=cfg, dedup_key=key, conn=conn,
                                   mentions=[a.slack for a in cfg.approvers_for(request.approval_point)])
        log.info("approval reminder %s: %s", key, result.action)
        sent.append(key)
    return SweepResult(sent, resolved)


def _closing_note(request: ApprovalRequest) -> str:
    if request.decision is None:
        return "the approval timed out (see the timeout page)"
    via = {"slack": "in Slack", "airflow": "in Airflow", "timeout": "by the timeout default"}.get(
        request.decided_via or "", "")
    return f"answered: {request.decision} {via}".strip()
