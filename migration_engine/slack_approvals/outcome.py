"""Recording a decision: the audit ledger entry and the Slack message update, shared by the
interactivity endpoint (Slack clicks) and the operator (Airflow UI answers and timeouts)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from migration_engine.slack_approvals import messages, store
from migration_engine.slack_approvals.payload import ApprovalRef

log = logging.getLogger(__name__)

AUDIT_ACTION = "approval.answered_in_slack"


def actor(via: str, user_id: str | None, user_name: str | None) -> str:
    if via == "timeout":
        return "airflow:response_timeout"
    who = f"{user_name} ({user_id})" if user_name and user_id and user_name != user_id else (user_id or user_name)
    return f"{via}:{who or 'unknown'}"


def audit_entry(ref: ApprovalRef, *, subject: str, decision: str, via: str, user_id: str | None,
                user_name: str | None, at: datetime) -> dict[str, Any]:
    """Keyword arguments for ``control.append_audit``: who, what, when, through what, for which task."""
    how = {"slack": "in Slack", "airflow": "in the Airflow UI/API", "timeout": "by response timeout (safe default)"}
    return {
        "actor": actor(via, user_id, user_name),
        "action": AUDIT_ACTION,
        "target": f"gate:{ref.gate}",
        "details": {"gate": ref.gate, "decision": decision, "via": via, "user_id": user_id, "user_name": user_name,
                    "decided_at": at.isoformat(), "subject": subject, "dag_id": ref.dag_id, "run_id": ref.run_id,
                    "task_id": ref.task_id, "map_index": ref.map_index, "ti_id": ref.ti_id},
        "reason": f"{decision} {how.get(via, via)}",
    }


def update_message(conn_id: str, *, channel: str | None, ts: str | None, blocks: list, subject: str,
                   line: str):
    """Replace the buttons of the request message with the outcome line (no-op without a message)."""
    from migration_engine.slack_approvals import slackio

    if not channel or not ts:
        return slackio.Delivery(False, error="the request message was never posted")
    text, new_blocks = messages.decided_message(blocks or [], subject, line)
    return slackio.update(conn_id, channel, ts, text, new_blocks)


def settle(cfg, ref: ApprovalRef, *, subject: str, decision: str, via: str, user_id: str | None,
           user_name: str | None, at: datetime, update_slack: bool = True) -> store.ApprovalRow | None:
    """After Airflow resumed the task: mark the request decided and show it on the Slack message.

    A row that is already decided (the Slack endpoint did it at click time) is left alone, so each
    decision is shown once. The audit ledger is written by ``AuditedApprovalOperator`` (every path)
    and by the endpoint (Slack clicks), not here. Returns the row as it was before this call.
    """
    from migration_engine import control_schema, db

    with db.connection(cfg.connections.legacy, application_name="migration-approvals") as conn:
        control_schema.require_current(conn, cfg.control_schema)
        try:
            row = store.get_approval(conn, cfg.control_schema, ref, for_update=True)
            if row is None or row.decision is not None:
                conn.rollback()
                return row
            store.decide(conn, cfg.control_schema, ref, decision=decision, decided_by=user_id,
                         decided_by_name=user_name, decided_via=via, decided_at=at)
            conn.commit()
        except Exception:
            conn.rollback()
            raise
    if update_slack:
        line = messages.outcome_line(decision, via=via, at=at, user_id=user_id, user_name=user_name,
                                     expires_at=row.expires_at)
        delivery = update_message(cfg.connections.slack, channel=row.channel, ts=row.message_ts, blocks=row.blocks,
                                  subject=row.subject or subject, line=line)
        if not delivery.ok:
            log.warning("approval %s: Slack message not updated (%s)", ref.key, delivery.error)
    return row
