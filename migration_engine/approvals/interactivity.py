"""What ``POST /slack/interactivity`` does with a Slack button click (framework-free, testable).

Order matters - nothing from the request is trusted before its signature is:

1. signing secret configured?                       no  -> 503 ``not_configured``
2. ``X-Slack-Signature`` valid, timestamp <= 5 min?  no  -> 401 ``bad_signature`` / ``stale_request``
3. this exact (timestamp, signature) seen before?    yes -> 409 ``replayed``
4. form field ``payload`` is JSON we understand?     no  -> 400 ``malformed_payload``
5. a stored request for the clicked message (channel + ts), agreeing with the button value in every
   field (approval point, DAG, run, task, map index, try)?  no -> 200 ``no_stored_request`` /
                                                        ``request_mismatch`` / ``outdated_message``, ephemeral
6. clicker one of the *stored* approval point's approvers?  no -> 200 ``not_authorised``, ephemeral
7. the approval still pending, for this very try, not past its deadline?  no -> 200, ephemeral answer
                                                        (already decided by X at T, timed out, no such approval)
8. record the answer in Airflow (``AirflowSide.respond``, as the approver's Airflow user, which Airflow checks
   against the request's stored ``assigned_users``: the task resumes), mark the request decided and
   append the audit ledger entry in one control-DB transaction; then (after the HTTP answer) replace the
   message's buttons with "Approved by @x at T".

Every accepted request is stored with its outcome (``slack_requests``), refused ones included.
Slack wants an answer within 3 s, so Slack calls run after the response (``Reply.followups``).

No Airflow here: what needs Airflow's metadata DB (which task instance is current, recording the
answer so the task resumes, masking the secret in the host's logs) comes in as an ``AirflowSide``,
built by ``migration_engine.airflow.slack_endpoint``.

Who may answer comes from server state only: the stored request's approval point (never the button
value's) and the HITL ``assigned_users`` stored when the request was created, intersected with the
current ``approvals.approvers`` (so removing someone from the config takes effect at once, and adding
someone does not open requests already pending; a request created with nobody assigned cannot be
answered from Slack at all).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migration_engine.approvals import answers, messages, signing, slackio, store
from migration_engine.approvals.answers import SLACK_RESPONDER_PREFIX
from migration_engine.approvals.payload import ACTION_OPEN, ApprovalRef, Interaction, PayloadError, parse_interaction

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AirflowSide:
    """What the handler needs from Airflow, supplied by the Airflow layer.

    ``respond(dag_id, run_id, task_id, chosen_options, responder, map_index=)`` records the answer
    and resumes the task (raises an ``answers.ApprovalError`` subclass otherwise);
    ``current_ti_id(ref)`` is the id of the task instance's current try (None: no such task);
    ``mask_secret(secret)`` hides the signing secret in the host process's logs.
    """

    respond: Callable[..., answers.RecordedAnswer]
    current_ti_id: Callable[[ApprovalRef], str | None]
    mask_secret: Callable[[str], Any] | None = None


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


def handle_interaction(body: bytes, headers: Mapping[str, str], *, airflow: AirflowSide, cfg=None,
                       now: float | None = None) -> Reply:
    """Verify, authorise and apply one interactivity request. Never raises."""
    try:
        return _handle(body, headers, airflow, cfg, now)
    except Exception as exc:  # noqa: BLE001 - answer, don't crash the API server worker
        from migration_engine.alerts import describe_error

        log.exception("slack interactivity: unexpected error")
        return _error(500, "internal_error", f"the approval could not be processed ({describe_error(exc)}); "
                                             "answer it in the Airflow UI (Required Actions)")


def _handle(body: bytes, headers: Mapping[str, str], airflow: AirflowSide, cfg, now: float | None) -> Reply:
    from migration_engine import control_schema, db
    from migration_engine.config import ConfigError, load_config

    try:
        cfg = cfg or load_config()
    except ConfigError as exc:
        log.error("slack interactivity: %s", exc)
        return _error(503, "config_invalid", "the migration config is invalid; see the API server log")
    try:
        secret = signing.signing_secret(cfg.connections.slack, mask=airflow.mask_secret)
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
        result, interaction = _process(conn, cfg, body, airflow)
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


def _refuse(cfg, it: Interaction, code: str, message: str, slack_text: str | None = None, *,
            security: bool = True) -> _Outcome:
    """A refused click: logged (a warning, with the clicker; ``security`` marks refusals that may be an
    attack), answered ephemerally in Slack, stored with its outcome in ``slack_requests`` by the caller."""
    log.warning("slack interactivity: %s%s: %s (Slack user %s, team %s)", "REFUSED " if security else "", code,
                message, it.user_id, it.team_id)
    reply = Reply(200, {"ok": False, "error": code, "message": message}, [_tell(cfg, it, slack_text or message)])
    return _Outcome(reply, code, message)


def _process(conn, cfg, body: bytes, airflow: AirflowSide) -> tuple[_Outcome, Interaction | None]:
    from migration_engine.approvals.points import (
        UnknownApprovalPoint,
        approvers_for,
        check_approval_point,
        person_for_slack,
    )

    try:
        it = parse_interaction(body)
    except PayloadError as exc:
        log.warning("slack interactivity: malformed payload: %s", exc)
        return _Outcome(_error(400, "malformed_payload", str(exc)), "malformed_payload"), None
    if it.action_id == ACTION_OPEN:  # the URL button: Slack opens the link itself
        return _Outcome(Reply(200, {"ok": True, "outcome": "ignored", "message": "link button"}), "ignored"), it
    ref = it.ref
    assert ref is not None
    # The button value is only a claim: the request stored when the message was posted (found by the
    # message Slack says was clicked) decides which approval this is and so who may answer it.
    stored = store.request_for_message(conn, cfg.control_schema, it.channel_id, it.message_ts)
    conn.commit()
    if stored is None:
        try:
            check_approval_point(ref.approval_point, cfg)
        except UnknownApprovalPoint as exc:
            return _refuse(cfg, it, "unknown_approval_point", f"{exc}; nothing was changed"), it
        current = store.get_approval(conn, cfg.control_schema, ref)
        conn.commit()
        if current is not None and current.ti_id == ref.ti_id and current.approval_point == ref.approval_point:
            return _refuse(cfg, it, "outdated_message",
                           f"this message (channel {it.channel_id}, ts {it.message_ts}) is not the current request "
                           f"for {ref.key}; use the newest approval message (or the Airflow UI). Nothing was changed",
                           security=False), it
        return _refuse(cfg, it, "no_stored_request",
                       f"no approval request was posted as this message (channel {it.channel_id}, ts "
                       f"{it.message_ts}) for {ref.key}; only clicks on requests this migration stored are "
                       "accepted. Nothing was changed"), it
    wrong = stored.mismatches(ref)
    if wrong:
        return _refuse(cfg, it, "request_mismatch",
                       f"the button value disagrees with the stored request for this message "
                       f"({'; '.join(wrong)}); the click was refused and nothing was changed",
                       "Your click changed nothing: this button does not match the approval request it was posted "
                       "with. Use the buttons on the newest approval message, or the Airflow UI."), it
    point = stored.approval_point
    try:
        check_approval_point(point, cfg)
    except UnknownApprovalPoint as exc:
        return _refuse(cfg, it, "unknown_approval_point", f"{exc}; nothing was changed"), it
    person = person_for_slack(cfg, point, it.user_id)
    if person is None:
        approvers = approvers_for(cfg, point)
        who = ", ".join(f"<@{u}>" for u in approvers) or "nobody (approvals.approvers is empty for this approval point)"
        return _refuse(
            cfg, it, "not_authorised",
            f"Slack user {it.user_id} is not an approver of approval point {point!r}; nothing was changed",
            f":no_entry: <@{it.user_id}>, you are not an approver of the *{point}* approval point, so your click "
            f"changed nothing. Approvers: {who} (config approvals.approvers).",
        ), it
    return _decide(conn, cfg, it, airflow, person), it


def _decided_text(row: store.ApprovalRow) -> str:
    return messages.outcome_line(row.decision, via=row.decided_via or "airflow", at=row.decided_at or datetime.now(UTC),
                                 user_id=row.decided_by, user_name=row.decided_by_name, expires_at=row.expires_at)


def _decide(conn, cfg, it: Interaction, airflow: AirflowSide, person) -> _Outcome:
    from migration_engine import control
    from migration_engine.approvals import outcome

    ref, decision, schema = it.ref, it.decision, cfg.control_schema
    try:
        row = store.get_approval(conn, schema, ref, for_update=True)  # held until commit/rollback
        if row is None or row.ti_id != ref.ti_id or row.approval_point != ref.approval_point:
            conn.rollback()  # changed since the message lookup (a new try re-recorded it): refuse, don't guess
            return _refuse(cfg, it, "outdated_message",
                           f"the stored request for {ref.key} changed while this click was checked; use the newest "
                           "approval message (or the Airflow UI). Nothing was changed")
        if row is not None and row.decision is not None:
            conn.rollback()
            line = _decided_text(row)
            code = "timed_out" if row.decided_via == "timeout" else "already_decided"
            result = _refuse(cfg, it, code, f"{ref.key} was already decided: {line}",
                             f"This approval was already decided - {line}. Your click changed nothing.",
                             security=False)
            result.reply.followups.append(_show(cfg, it, row, line))  # in case the message still has buttons
            return result
        if row is not None and row.expires_at is not None and row.expires_at <= datetime.now(UTC):
            conn.rollback()  # the scheduler's timeout sweep takes the safe default; a late click must not race it
            return _refuse(cfg, it, "timed_out",
                           f"{ref.key} timed out at {row.expires_at.isoformat()}; the safe default applies and "
                           "nothing was changed", security=False)
        current = airflow.current_ti_id(ref)
        if current is None:
            conn.rollback()
            return _refuse(cfg, it, "unknown_approval",
                           f"no approval {ref.key} exists in Airflow (unknown DAG run or task); nothing was changed")
        if current != ref.ti_id:
            conn.rollback()
            return _refuse(cfg, it, "outdated_message",
                           f"this message belongs to an earlier try of {ref.key}; use the newest approval message "
                           "(or the Airflow UI). Nothing was changed")
        responder = {"id": f"{SLACK_RESPONDER_PREFIX}{it.user_id}", "name": it.user_name or it.user_id}
        try:
            # as the Airflow user this person is: Airflow checks it against the request's stored assigned_users
            answer = airflow.respond(ref.dag_id, ref.run_id, ref.task_id, [decision], responder,
                                     map_index=ref.map_index, assignee=person.airflow)
        except answers.AlreadyAnswered as exc:
            conn.rollback()
            return _refuse(cfg, it, "already_decided", f"{exc}; your click changed nothing")
        except answers.NoPendingApproval as exc:
            conn.rollback()
            return _refuse(cfg, it, "not_pending", f"{exc}; nothing was changed")
        except answers.NotAnApprover as exc:
            conn.rollback()
            return _refuse(cfg, it, "not_authorised",
                           f"{exc} (the request's assigned users, stored when it was created); nothing was changed",
                           f":no_entry: <@{it.user_id}>, your Airflow user {person.airflow!r} is not assigned to "
                           "this request, so your click changed nothing.")
        except answers.ApprovalError as exc:
            conn.rollback()
            return _refuse(cfg, it, "refused_by_airflow", f"{exc}; nothing was changed")
        at = answer.responded_at
        store.decide(conn, schema, ref, decision=decision, decided_by=it.user_id, decided_by_name=it.user_name,
                     decided_via="slack", decided_at=at)
        entry = outcome.audit_entry(ref, subject=row.subject, decision=decision, via="slack",
                                    user_id=it.user_id, user_name=it.user_name, at=at)
        entry["details"].update({"slack_team_id": it.team_id, "slack_channel_id": it.channel_id,
                                 "slack_message_ts": it.message_ts, "task_resumed": answer.resumed,
                                 "airflow_user": person.airflow})
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
    from migration_engine.approvals import outcome

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
