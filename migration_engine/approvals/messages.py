"""Block Kit for approval requests and their outcome (no I/O).

The request shows what is being approved (subject, body, the approval point and what it means), the figures
that justify it, who may answer, what happens without an answer, **Approve** / **Reject** buttons
(values carry the approval reference) and a link to the approval in the Airflow UI. When the request is
decided, the buttons are replaced by one line saying what was decided, by whom, when and how - the
message itself becomes the record on-call sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from migration_engine.approvals.payload import ACTION_APPROVE, ACTION_OPEN, ACTION_REJECT, ApprovalRef
from migration_engine.approvals.points import APPROVAL_POINTS
from migration_engine.slack_text import esc, fmt, trunc

ACTIONS_BLOCK_ID = "migration_approval_actions"
DECISION_BLOCK_ID = "migration_approval_decision"
_HEADER_MAX, _SECTION_MAX, _FIELD_MAX, _FIELDS_PER_SECTION, _MAX_FIGURES = 150, 3000, 500, 10, 30


def utc(ts: datetime) -> str:
    from datetime import UTC

    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _figure_sections(figures: Mapping[str, Any] | None) -> list[dict]:
    items = list((figures or {}).items())[:_MAX_FIGURES]
    out = []
    for start in range(0, len(items), _FIELDS_PER_SECTION):
        out.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": trunc(f"*{esc(k)}*\n{esc(fmt(v))}", _FIELD_MAX)}
            for k, v in items[start:start + _FIELDS_PER_SECTION]]})
    return out


def request_message(
    *,
    ref: ApprovalRef,
    subject: str,
    body: str | None,
    figures: Mapping[str, Any] | None,
    approvers: list[str],
    link: str | None,
    expires_at: datetime | None,
    safe_default: str = "Reject",
    figures_note: str | None = None,
) -> tuple[str, list[dict]]:
    """(fallback text, blocks) of the approval request."""
    point_text = APPROVAL_POINTS.get(ref.approval_point, "")
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                    "text": trunc(f":raised_hand: Approval needed: {subject}", _HEADER_MAX)}},
    ]
    if body and body.strip():
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": trunc(esc(body.strip()), _SECTION_MAX)}})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": trunc(
        f"*Approval point* `{esc(ref.approval_point)}`" + (f": {esc(point_text)}" if point_text else ""),
        _SECTION_MAX)}})
    if figures_note:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": trunc(esc(figures_note), 2000)}]})
    blocks.extend(_figure_sections(figures))

    who = (" ".join(f"<@{u}>" for u in approvers) if approvers else
           ":warning: no Slack approvers are configured for this approval point (approvals.approvers); "
           "answer in Airflow")
    deadline = (f"No answer by {utc(expires_at)}: *{safe_default}* (safe default) and on-call is paged."
                if expires_at else f"No response timeout; the safe default is *{safe_default}*.")
    where = f"DAG `{esc(ref.dag_id)}` · run `{esc(ref.run_id)}` · task `{esc(ref.task_id)}`"
    if ref.map_index >= 0:
        where += f" · map index {ref.map_index}"
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": trunc(where, 2000)},
        {"type": "mrkdwn", "text": trunc(f"Approvers: {who}", 2000)},
        {"type": "mrkdwn", "text": deadline},
    ]})
    value = ref.to_value()
    elements: list[dict] = [
        {"type": "button", "action_id": ACTION_APPROVE, "style": "primary", "value": value,
         "text": {"type": "plain_text", "text": "Approve"},
         "confirm": {"title": {"type": "plain_text", "text": "Approve?"},
                     "text": {"type": "mrkdwn",
                              "text": trunc(f"*{esc(subject)}*\nApproving lets the DAG continue.", 300)},
                     "confirm": {"type": "plain_text", "text": "Approve"},
                     "deny": {"type": "plain_text", "text": "Cancel"}}},
        {"type": "button", "action_id": ACTION_REJECT, "style": "danger", "value": value,
         "text": {"type": "plain_text", "text": "Reject"}},
    ]
    if link:
        elements.append({"type": "button", "action_id": ACTION_OPEN, "url": link,
                         "text": {"type": "plain_text", "text": "Open in Airflow"}})
    blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": elements})
    fallback = (f":raised_hand: Approval needed: {esc(subject)} (approval point {ref.approval_point}, "
                f"DAG {ref.dag_id}, run {ref.run_id})")
    if link:
        fallback += f" {link}"
    return trunc(fallback, 3000), blocks


def _link_from(blocks: list[dict]) -> str | None:
    for block in blocks:
        if block.get("block_id") == ACTIONS_BLOCK_ID:
            for element in block.get("elements", []):
                if isinstance(element, dict) and element.get("url"):
                    return element["url"]
    return None


def outcome_line(decision: str, *, via: str, at: datetime, user_id: str | None = None,
                 user_name: str | None = None, expires_at: datetime | None = None) -> str:
    if via == "timeout":
        limit = f" by {utc(expires_at)}" if expires_at else ""
        return (f":hourglass: *Timed out*: no answer{limit}. Took the safe default *{decision}*: "
                f"the migration does not proceed. On-call was paged. ({utc(at)})")
    verb = ":white_check_mark: *Approved*" if decision == "Approve" else ":no_entry: *Rejected*"
    if via == "slack" and user_id:
        who = f"<@{user_id}>" + (f" ({esc(user_name)})" if user_name else "")
    else:
        who = esc(user_name or user_id or "unknown")
    place = "in Slack" if via == "slack" else "in the Airflow UI"
    return f"{verb} by {who} {place} at {utc(at)}"


def decided_message(blocks: list[dict], fallback_subject: str, line: str) -> tuple[str, list[dict]]:
    """The request's blocks with the buttons replaced by the outcome line (and the Airflow link kept)."""
    link = _link_from(blocks)
    kept = [b for b in blocks if b.get("block_id") not in (ACTIONS_BLOCK_ID, DECISION_BLOCK_ID)]
    if kept and kept[0].get("type") == "header":
        header = kept[0]["text"]["text"].replace(":raised_hand: Approval needed:", "Approval:")
        kept[0] = {**kept[0], "text": {**kept[0]["text"], "text": header}}
    kept.append({"type": "section", "block_id": DECISION_BLOCK_ID, "text": {"type": "mrkdwn", "text": line}})
    if link:
        kept.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open in Airflow>"}]})
    if not blocks:  # the original blocks are unknown: say at least what this was about
        kept.insert(0, {"type": "header", "text": {"type": "plain_text",
                                                   "text": trunc(f"Approval: {fallback_subject}", _HEADER_MAX)}})
    fallback = f"Approval: {esc(fallback_subject)}: " + line
    return trunc(fallback, 3000), kept
