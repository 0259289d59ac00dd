"""Control-schema state of Slack approvals: seen requests (replays) and approval messages.

Two small tables of the control schema (migration ``include/sql/control/migrations/005_slack_tables.sql``,
applied by migration_setup). The notifier in a worker and the endpoint in the API server only check
that the control schema is current (``control_schema.require_current``); they never run DDL.

* ``slack_requests``: one row per accepted signed request, keyed by (timestamp, signature). A second
  insert of the same key is a replay. The row then records who clicked what and the outcome, so
  refused clicks (unauthorised user, unknown approval point, stale message) leave a trail too. Rows older than
  ``REQUEST_RETENTION`` are pruned (a request that old fails the timestamp check anyway).
* ``slack_approvals``: one row per HITL task instance that asked for approval: the approval point
  (stored in the column ``gate``, its name from before the gate/approval-point rename; kept so
  existing rows stay readable without a migration), where its
  Slack message is (channel id + ts + blocks) and the decision, by whom, when, via what. The row is
  locked while a click is applied, and the decision is written only if none exists, so two clicks
  (or two API-server workers) cannot decide twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migration_engine import sqlfiles
from migration_engine.approvals.payload import ApprovalRef

REQUEST_RETENTION_SECONDS = 30 * 86400

# --- requests ------------------------------------------------------------------------------
def remember_request(conn, schema: str, request_ts: int, signature: str) -> bool:
    """Store a signed request; False if exactly this request was stored before (a replay). Commits."""
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "slack/request_remember.sql", {"schema": schema},
                         {"request_ts": request_ts, "signature": signature})
            fresh = cur.fetchone() is not None
            if fresh:
                sqlfiles.run(cur, "slack/request_prune.sql", {"schema": schema},
                             {"older_than": int(time.time()) - REQUEST_RETENTION_SECONDS})
        conn.commit()
        return fresh
    except Exception:
        conn.rollback()
        raise


def record_request_outcome(conn, schema: str, request_ts: int, signature: str, *, outcome: str,
                           detail: str = "", user_id: str | None = None, user_name: str | None = None,
                           action: str | None = None, approval_key: str | None = None) -> None:
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "slack/request_outcome.sql", {"schema": schema},
                         {"request_ts": request_ts, "signature": signature, "outcome": outcome,
                          "detail": detail[:2000], "user_id": user_id, "user_name": user_name,
                          "action": action, "approval_key": approval_key})
        conn.commit()
    except Exception:
        conn.rollback()
        raise


# --- approvals -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ApprovalRow:
    ti_id: str
    approval_point: str  # column "gate"
    subject: str
    channel: str | None
    message_ts: str | None
    blocks: list
    expires_at: datetime | None
    decision: str | None
    decided_by: str | None
    decided_by_name: str | None
    decided_via: str | None
    decided_at: datetime | None


def _ref_params(ref: ApprovalRef) -> dict[str, Any]:
    return {"dag_id": ref.dag_id, "run_id": ref.run_id, "task_id": ref.task_id, "map_index": ref.map_index}


def save_request(conn, schema: str, ref: ApprovalRef, *, subject: str, channel: str | None,
                 message_ts: str | None, blocks: list, delivery_error: str | None,
                 expires_at: datetime | None) -> None:
    """Record (or re-record, for a new try) an approval request and its Slack message. Commits."""
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "slack/approval_upsert.sql", {"schema": schema}, {
                **_ref_params(ref), "ti_id": ref.ti_id, "approval_point": ref.approval_point, "subject": subject[:1000],
                "channel": channel, "message_ts": message_ts, "blocks": json.dumps(blocks),
                "delivery_error": delivery_error, "expires_at": expires_at,
            })
        conn.commit()
    except Exception:
        conn.rollback()
        raise


def get_approval(conn, schema: str, ref: ApprovalRef, *, for_update: bool = False) -> ApprovalRow | None:
    """The request row (``for_update``: locked until the caller's transaction ends)."""
    name = "slack/approval_get_for_update.sql" if for_update else "slack/approval_get.sql"
    with conn.cursor() as cur:
        sqlfiles.run(cur, name, {"schema": schema}, _ref_params(ref))
        row = cur.fetchone()
    return ApprovalRow(*row) if row else None


@dataclass(frozen=True)
class StoredRequest:
    """What was stored when the request was posted: the one source of truth a click is checked against."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    ti_id: str
    approval_point: str  # column "gate"
    expires_at: datetime | None
    decision: str | None

    def mismatches(self, ref: ApprovalRef) -> list[str]:
        """Fields of the button value ``ref`` that disagree with this stored request, as ``field value != stored``."""
        return [f"{name} {getattr(ref, name)!r} != stored {getattr(self, name)!r}"
                for name in ("approval_point", "dag_id", "run_id", "task_id", "map_index", "ti_id")
                if getattr(ref, name) != getattr(self, name)]


def request_for_message(conn, schema: str, channel: str | None, message_ts: str | None) -> StoredRequest | None:
    """The stored request posted as this Slack message (None: not a message we posted, or an old one)."""
    if not channel or not message_ts:
        return None
    with conn.cursor() as cur:
        sqlfiles.run(cur, "slack/approval_get_by_message.sql", {"schema": schema},
                     {"channel": channel, "message_ts": message_ts})
        rows = cur.fetchall()
    if len(rows) != 1:  # (channel, ts) names one Slack message; two rows would be a corrupt store: trust neither
        return None
    dag_id, run_id, task_id, map_index, ti_id, point, expires_at, decision = rows[0]
    return StoredRequest(dag_id, run_id, task_id, int(map_index), ti_id, point, expires_at, decision)


def decide(conn, schema: str, ref: ApprovalRef, *, decision: str, decided_by: str | None,
           decided_by_name: str | None, decided_via: str, decided_at: datetime) -> bool:
    """Write the decision if the row has none (caller's transaction). True if this call decided."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "slack/approval_decide.sql", {"schema": schema}, {
            **_ref_params(ref), "decision": decision, "decided_by": decided_by,
            "decided_by_name": decided_by_name, "decided_via": decided_via, "decided_at": decided_at,
        })
        return cur.fetchone() is not None


def latest_gate_results(conn, schema: str, gates: list[str]) -> dict[str, dict[str, Any]]:
    """{gate: {status, figures, reason, evaluated_at}} of the latest evaluation of each (machine) gate:
    the checks whose figures an approval request shows."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "slack/gate_results_latest.sql", {"schema": schema}, {"gates": list(gates)})
        rows = cur.fetchall()
    conn.commit()
    return {gate: {"status": status, "figures": figures or {}, "reason": reason, "evaluated_at": at}
            for gate, status, figures, reason, at in rows}
