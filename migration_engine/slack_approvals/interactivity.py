"""What ``POST /slack/interactivity`` does with a Slack button click (framework-free, testable).

Order matters - nothing from the request is trusted before its signature is:

1. signing secret configured?                       no  -> 503 ``not_configured``
2. ``X-Slack-Signature`` valid, timestamp <= 5 min?  no  -> 401 ``bad_signature`` / ``stale_request``
3. this exact (timestamp, signature) seen before?    yes -> 409 ``replayed``
4. form field ``payload`` is JSON we understand?     no  -> 400 ``malformed_payload``
5. gate known?  clicker an approver of the gate?     no  -> 200, ephemeral answer in Slack, nothing changes
6. the approval still pending, for this very try?    no  -> 200, ephemeral answer (already decided by X at T,
                                                              outdated message, no such approval)
7. record the answer in Airflow (``approvals.respond``: the task resumes), mark the request decided and
   append the audit ledger entry in one control-DB transaction; then (after the HTTP answer) replace the
   message's buttons with "Approved by @x at T".

Every accepted request is stored with its outcome (``slack_requests``), refused ones included.
Slack wants an answer within 3 s, so Slack calls run after the response (``Reply.followups``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migration_engine.slack_approvals import messages, signing, slackio, store
from migration_engine.slack_approvals.payload import ACTION_OPEN, Interaction, PayloadError, parse_interaction

log = logging.getLogger(__name__)

SLACK_RESPONDER_PREFIX = "slack:"


@dataclass
class Reply:
    """The HTTP answer, plus Slack calls to make after it was sent."""

    status: int
    body: dict[str, Any]
    followups: list[Callable[[], Any]] = field(default_factory=list)

    def run_followups(self) -> None:
        for fn in self.followups:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a follow-up must not break the next one
                log.warning("slack interactivity: follow-up failed: %s", type(exc).__name__)


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"ok": False, "error": code, "message": message})


@dataclass
class _Outcome:
    reply: Reply
    outcome: str
    detail: str = ""


def handle_interaction(body: bytes, headers: Mapping[str, str], *, cfg=None, now: float | None = None) -> Reply:
    """Verify, authorise and apply one interactivity request. Never raises."""
    try:
        return _handle(body, headers, cfg, now)
    except Exception as exc:  # noqa: BLE001 - answer, don't crash the API server worker
        from migration_engine.alerts import describe_error

        log.exception("slack interactivity: unexpected error")
        return _error(500, "internal_error", f"the approval could not be processed ({describe_error(exc)}); "
                                             "answer it in the Airflow UI (Required Actions)")


def _handle(body: bytes, headers: Mapping[str, str], cfg, now: float | None) -> Reply:
    from migration_engine import control_schema, db
    from migration_engine.config import ConfigError, load_config

    try:
        cfg = cfg or load_config()
    except ConfigError as exc:
        log.error("slack interactivity: %s", exc)
        return _error(503, "config_invalid", "the migration config is invalid; see the API server log")
    try:
        secret = signing.signing_secret(cfg.connections.slack)
    except signing.SigningSecretMissing as exc:
        log.error("slack interactivity: %s", exc)
        return _error(503, "not_configured", str(exc))
    try:
        verified = signing.verify_request(body, headers, secret, now=now)
    except signing.RequestRejected as exc:
        log.warning("slack interactivity: refused request: %s", exc.message)
        return _error(exc.status, exc.code, exc.message)

    schema = cfg.control_schema
    try:
        conn = db.connect(cfg.connections.legacy, application_name="migration-slack-interactivity")
    except Exception as exc:  # noqa: BLE001
        log.error("slack interactivity: control database unavailable: %s", exc)
        return _error(503, "control_db_unavailable",
                      "the control database is unavailable, so the click cannot be checked for replays or "
                      "audited; nothing was changed. Answer in the Airflow UI or try again")
    with closing(conn):
        try:
            control_schema.require_current(conn, schema)
            fresh = store.remember_request(conn, schema, verified.timestamp, verified.signature)
        except Exception as exc:  # noqa: BLE001
            log.error("slack interactivity: control schema unavailable: %s", exc)
            return _error(503, "control_db_unavailable", f"control schema unavailable ({type(exc).__name__}); "
                                                         "nothing was changed")
        if not fresh:
            log.warning("slack interactivity: replayed request (ts %s) refused", verified.timestamp)
            return _error(409, "replayed", "this exact request (same timestamp and signature) was already "
                                           "received; replays are refused and nothing was changed")
        result, interaction = _process(conn, cfg, body)
        try:
            ref = interaction.ref if interaction else None
            store.record_request_outcome(
                conn, schema, verified.timestamp, verified.signature, outcome=result.outcome,
                detail=result.detail or result.reply.body.get("message", ""),
                user_id=interaction.user_id if interaction else None,
                user_name=interaction.user_name if interaction else None,
                action=interaction.action_id if interaction else None, approval_key=ref.key if ref else None)
        except Exception as exc:  # noqa: BLE001 - the outcome log must not undo a recorded decision
            log.warning("slack interactivity: request outcome not stored: %s", type(exc).__name__)
        return result.reply


def _tell(cfg, it: Interaction, text: str) -> Callable[[], Any]:
    return lambda: slackio.tell_user(cfg.connections.slack, text=text, response_url=it.response_url,
                                     channel_id=it.channel_id, user_id=it.user_id)


def _refuse(cfg, it: Interaction, code: str, message: str, slack_text: str | None = None) -> _Outcome:
    log.warning("slack interactivity: %s: %s (user %s)", code, message, it.user_id)
    reply = Reply(200, {"ok": False, "error": code, "message": message}, [_tell(cfg, it, slack_text or message)])
    return _Outcome(reply, code, message)


def _process(conn, cfg, body: bytes) -> tuple[_Outcome, Interaction | None]:
    from migration_engine.slack_approvals.gates import UnknownGateError, approvers_for, check_gate

    try:
        it = parse_interaction(body)
    except PayloadError as exc:
        log.warning("slack interactivity: malformed payload: %s", exc)
        return _Outcome(_error(400, "malformed_payload", str(exc)), "malformed_payload"), None
    if it.action_id == ACTION_OPEN:  # the URL button: Slack opens the link itself
        return _Outcome(Reply(200, {"ok": True, "outcome": "ignored", "message": "link button"}), "ignored"), it
    ref = it.ref
    assert ref is not None
    try:
        check_gate(ref.gate, cfg)
    except UnknownGateError as exc:
        return _refuse(cfg, it, "unknown_gate", f"{exc}; nothing was changed"), it
    approvers = approvers_for(cfg, ref.gate)
    if it.user_id not in approvers:
        who = ", ".join(f"<@{u}>" for u in approvers) or "nobody (approvals.approvers is empty for this gate)"
        return _refuse(
            cfg, it, "not_authorised",
            f"Slack user {it.user_id} is not an approver of gate {ref.gate!r}; nothing was changed",
            f":no_entry: <@{it.user_id}>, you are not an approver of the *{ref.gate}* gate, so your click changed "
            f"nothing. Approvers: {who} (config approvals.approvers).",
        ), it
    return _decide(conn, cfg, it), it


def _current_ti_id(ref) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        ti_id = session.scalar(select(TaskInstance.id).where(
            TaskInstance.dag_id == ref.dag_id, TaskInstance.run_id == ref.run_id,
            TaskInstance.task_id == ref.task_id, TaskInstance.map_index == ref.map_index))
    return str(ti_id) if ti_id is not None else None


def _decided_text(row: store.ApprovalRow) -> str:
    return messages.outcome_line(row.decision, via=row.decided_via or "airflow", at=row.decided_at or datetime.now(UTC),
                                 user_id=row.decided_by, user_name=row.decided_by_name, expires_at=row.expires_at)


def _decide(conn, cfg, it: Interaction) -> _Outcome:
    from migration_engine import approvals, control
    from migration_engine.slack_approvals import outcome

    ref, decision, schema = it.ref, it.decision, cfg.control_schema
    try:
        row = store.get_approval(conn, schema, ref, for_update=True)  # held until commit/rollback
        if row is not None and row.decision is not None:
            conn.rollback()
            line = _decided_text(row)
            result = _refuse(cfg, it, "already_decided", f"{ref.key} was already decided: {line}",
                             f"This approval was already decided - {line}. Your click changed nothing.")
            result.reply.followups.append(_show(cfg, it, row, line))  # in case the message still has buttons
            return result
        current = _current_ti_id(ref)
        if current is None:
            conn.rollback()
            return _refuse(cfg, it, "unknown_approval",
                           f"no approval {ref.key} exists in Airflow (unknown DAG run or task); nothing was changed")
        if current != ref.ti_id or (row is not None and row.ti_id != ref.ti_id):
            conn.rollback()
            return _refuse(cfg, it, "outdated_message",
                           f"this message belongs to an earlier try of {ref.key}; use the newest approval message "
                           "(or the Airflow UI). Nothing was changed")
        responder = {"id": f"{SLACK_RESPONDER_PREFIX}{it.user_id}", "name": it.user_name or it.user_id}
        try:
            answer = approvals.respond(ref.dag_id, ref.run_id, ref.task_id, [decision], responder,
                                       map_index=ref.map_index)
        except approvals.AlreadyAnswered as exc:
            conn.rollback()
            return _refuse(cfg, it, "already_decided", f"{exc}; your click changed nothing")
        except approvals.NoPendingApproval as exc:
            conn.rollback()
            return _refuse(cfg, it, "not_pending", f"{exc}; nothing was changed")
        except approvals.ApprovalError as exc:
            conn.rollback()
            return _refuse(cfg, it, "refused_by_airflow", f"{exc}; nothing was changed")
        at = answer.responded_at
        store.decide(conn, schema, ref, decision=decision, decided_by=it.user_id, decided_by_name=it.user_name,
                     decided_via="slack", decided_at=at)
        entry = outcome.audit_entry(ref, subject=row.subject if row else "", decision=decision, via="slack",
                                    user_id=it.user_id, user_name=it.user_name, at=at)
        entry["details"].update({"slack_team_id": it.team_id, "slack_channel_id": it.channel_id,
                                 "slack_message_ts": it.message_ts, "task_resumed": answer.resumed})
        control.append_audit(conn, schema, **entry)
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    line = messages.outcome_line(decision, via="slack", at=at, user_id=it.user_id, user_name=it.user_name)
    log.info("slack interactivity: %s %s by Slack user %s", ref.key, decision, it.user_label)
    verb = "approved" if decision == "Approve" else "rejected"
    reply = Reply(200, {"ok": True, "outcome": verb, "message": f"{ref.key} {verb} by {it.user_label}",
                        "decided_at": at.isoformat()})
    reply.followups.append(_show(cfg, it, row, line))
    return _Outcome(reply, verb)


def _show(cfg, it: Interaction, row: store.ApprovalRow | None, line: str) -> Callable[[], Any]:
    """Replace the buttons of the clicked message with the outcome line."""
    from migration_engine.slack_approvals import outcome

    channel = it.channel_id or (row.channel if row else None)
    ts = it.message_ts or (row.message_ts if row else None)
    blocks = it.message_blocks or (row.blocks if row else [])
    subject = row.subject if row else (it.ref.task_id if it.ref else "")

    def run():
        delivery = outcome.update_message(cfg.connections.slack, channel=channel, ts=ts, blocks=blocks,
                                          subject=subject, line=line)
        if not delivery.ok:
            log.warning("slack interactivity: message not updated: %s", delivery.error)
        return delivery

    return run
