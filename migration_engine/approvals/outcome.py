"""Recording a request and its decision: audit ledger entries, the Slack message update and the
timeout page, shared by the interactivity endpoint (Slack clicks) and the approval operator of the
Airflow layer (requests, Airflow UI answers and timeouts). No Airflow: callers pass plain ids.

Ledger targets: ``approval.requested`` / ``approval.approved|rejected|error`` name the approval
point itself; the Slack click entry (``approval.answered_in_slack``) uses ``approval_point:<name>``
(entries written before the gate/approval-point rename say ``gate:<name>``; same meaning).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from migration_engine.approvals import messages, store
from migration_engine.approvals.answers import APPROVE, Decision
from migration_engine.approvals.payload import ApprovalRef

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
        "target": f"approval_point:{ref.approval_point}",
        "details": {"approval_point": ref.approval_point, "decision": decision, "via": via, "user_id": user_id,
                    "user_name": user_name, "decided_at": at.isoformat(), "subject": subject, "dag_id": ref.dag_id,
                    "run_id": ref.run_id, "task_id": ref.task_id, "map_index": ref.map_index, "ti_id": ref.ti_id},
        "reason": f"{decision} {how.get(via, via)}",
    }


def update_message(conn_id: str, *, channel: str | None, ts: str | None, blocks: list, subject: str,
                   line: str):
    """Replace the buttons of the request message with the outcome line (no-op without a message)."""
    from migration_engine.approvals import slackio

    if not channel or not ts:
        return slackio.Delivery(False, error="the request message was never posted")
    text, new_blocks = messages.decided_message(blocks or [], subject, line)
    return slackio.update(conn_id, channel, ts, text, new_blocks)


def settle(cfg, ref: ApprovalRef, *, subject: str, decision: str, via: str, user_id: str | None,
           user_name: str | None, at: datetime, update_slack: bool = True) -> store.ApprovalRow | None:
    """After Airflow resumed the task: mark the request decided and show it on the Slack message.

    A row that is already decided (the Slack endpoint did it at click time) is left alone, so each
    decision is shown once. The audit ledger is written by ``MigrationApprovalOperator`` (every path)
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


# --- the request and its decision in the audit ledger (every path: Slack, UI, REST, timeout) ---
def _ledger(cfg, point: str, action: str, actor_: str, ids: dict[str, Any], details: dict, reason: str) -> None:
    """One ledger entry for ``point``; raises if the ledger cannot be written (an unaudited approval
    must not act)."""
    from migration_engine import control, db

    with db.connection(cfg.connections.legacy) as conn:
        if not control.control_schema_exists(conn, cfg.control_schema):
            raise control.ControlError(f"cannot audit approval point {point!r}: control schema {cfg.control_schema} "
                                       "is missing; run the migration_setup DAG first")
        control.audit(conn, cfg.control_schema, actor=actor_, action=action, target=point,
                      details={**ids, **details}, reason=reason)


def audit_request(cfg, point: str, ids: dict[str, Any], *, subject: str, options: list[str]) -> None:
    _ledger(cfg, point, "approval.requested", f"airflow:{ids['dag_id']}", ids,
            {"subject": subject, "options": options}, reason=subject)


def audit_decision(cfg, point: str, ids: dict[str, Any], event: dict[str, Any], *, subject: str) -> None:
    """``approval.approved`` / ``approval.rejected`` (who, when, timed out?) or ``approval.error``."""
    if "error" in event:
        _ledger(cfg, point, "approval.error", "airflow", ids, {"event": {k: str(v) for k, v in event.items()}},
                reason=subject)
        return
    chosen = list(event.get("chosen_options") or [])
    user = event.get("responded_by_user") or None
    timed_out = bool(event.get("timedout"))
    who = "timeout-default" if timed_out or not user else f"{user.get('name')} ({user.get('id')})"
    decision = "approved" if chosen == [APPROVE] else "rejected"
    responded_at = event.get("responded_at")
    _ledger(cfg, point, f"approval.{decision}", who, ids, {
        "chosen_options": chosen, "params_input": event.get("params_input") or {},
        "responded_at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at,
        "timed_out": timed_out}, reason=subject)


# --- no answer in time -----------------------------------------------------------------------
def timeout_page(cfg, ref: ApprovalRef, *, subject: str, decision: str, timeout: Any, link: str | None):
    """Page on-call (critical) that nobody answered and the safe default was taken; never raises."""
    from migration_engine.alerts import send_alert
    from migration_engine.approvals.points import approvers_for

    approvers = approvers_for(cfg, ref.approval_point)
    text = (f"Nobody answered the *{ref.approval_point}* approval \"{subject}\" within {timeout}. The approval "
            f"point took its safe default *{decision}*: the migration does NOT proceed past this step. Clear the "
            "task in Airflow to ask again once someone can decide.")
    figures = {"approval point": ref.approval_point, "waited": str(timeout) if timeout else "-",
               "safe default taken": decision, "approvers": ", ".join(approvers) if approvers else "none configured"}
    result = send_alert("critical", f"Approval timed out: {subject}", text, figures=figures, dag_id=ref.dag_id,
                        task_id=ref.task_id, run_id=ref.run_id, link=link, link_text="Approval in Airflow",
                        cfg=cfg, map_index=ref.map_index if ref.map_index >= 0 else None)
    if not result.ok:
        log.error("approval %s timed out and the critical page could not be delivered (%s)", ref.key, result.error)
    return result


def settle_decision(cfg, ref: ApprovalRef, d: Decision, *, subject: str) -> None:
    """After the task resumed: mark the request decided (and show it in Slack); never raises."""
    try:
        settle(cfg, ref, subject=subject, decision=d.decision, via=d.via, user_id=d.user_id, user_name=d.user_name,
               at=d.at)
    except Exception as exc:  # noqa: BLE001
        from migration_engine.alerts import describe_error

        log.error("approval %s: decision not recorded in the control schema: %s", ref.key, describe_error(exc))
