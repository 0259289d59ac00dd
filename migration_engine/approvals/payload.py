"""Slack interactivity payloads and the values our buttons carry.

Slack posts ``application/x-www-form-urlencoded`` with one field, ``payload``, holding JSON. For a
button click (``type: block_actions``) we need: who clicked (``user.id``), which of our buttons
(``actions[0].action_id``), which approval (``actions[0].value``, written by our notifier), and
where the message is (``container.channel_id`` / ``container.message_ts``, ``response_url``).

Everything here runs only after the signature was verified; it still refuses anything unexpected
with a ``PayloadError`` naming the problem (the endpoint answers 400).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from migration_engine.errors import MigrationError

ACTION_APPROVE = "migration_approval_approve"
ACTION_REJECT = "migration_approval_reject"
ACTION_OPEN = "migration_approval_open"  # the "Open in Airflow" URL button (Slack reports its clicks too)
DECISIONS = {ACTION_APPROVE: "Approve", ACTION_REJECT: "Reject"}
VALUE_VERSION = 1
MAX_BODY_BYTES = 1_000_000


class PayloadError(MigrationError, ValueError):
    """The (authentic) request is not an interaction we understand."""


@dataclass(frozen=True)
class ApprovalRef:
    """Which HITL task instance a button answers (``ti_id`` pins the exact try) and for which approval point.

    Wire format of the button value: ``{"v": 1, "p": point, "d", "r", "t", "m", "i"}``. Messages
    posted before the gate/approval-point rename carry the point under ``"g"``; both are read.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    ti_id: str
    approval_point: str

    @property
    def key(self) -> str:
        suffix = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}{suffix}"

    def to_value(self) -> str:
        return json.dumps({"v": VALUE_VERSION, "p": self.approval_point, "d": self.dag_id, "r": self.run_id,
                           "t": self.task_id, "m": self.map_index, "i": self.ti_id}, separators=(",", ":"))

    @classmethod
    def from_value(cls, value: Any) -> ApprovalRef:
        if not isinstance(value, str) or not value:
            raise PayloadError("the button has no value; it was not sent by the migration approval notifier")
        try:
            data = json.loads(value)
        except ValueError:
            raise PayloadError("the button value is not JSON; it was not sent by the migration approval notifier") \
                from None
        if not isinstance(data, dict) or data.get("v") != VALUE_VERSION:
            version = data.get("v") if isinstance(data, dict) else None
            raise PayloadError(f"unsupported button value version {version!r}")
        if "p" not in data and "g" in data:  # posted before the rename
            data = {**data, "p": data["g"]}
        missing = [k for k in ("p", "d", "r", "t", "i") if not isinstance(data.get(k), str) or not data.get(k)]
        if missing or not isinstance(data.get("m"), int) or isinstance(data.get("m"), bool):
            raise PayloadError(f"the button value lacks {missing or ['m']}; "
                               "expected approval point/dag/run/task/map_index/ti ids")
        return cls(dag_id=data["d"], run_id=data["r"], task_id=data["t"], map_index=data["m"], ti_id=data["i"],
                   approval_point=data["p"])


@dataclass(frozen=True)
class Interaction:
    user_id: str
    user_name: str
    team_id: str | None
    action_id: str
    ref: ApprovalRef | None  # None for the "Open in Airflow" button
    channel_id: str | None
    message_ts: str | None
    response_url: str | None
    message_blocks: list = field(default_factory=list)

    @property
    def decision(self) -> str | None:
        return DECISIONS.get(self.action_id)

    @property
    def user_label(self) -> str:
        return f"{self.user_name} ({self.user_id})" if self.user_name else self.user_id


def _obj(data: Any, key: str) -> dict:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def parse_form(body: bytes) -> dict:
    """The JSON in the form field ``payload``."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(f"request body is {len(body)} bytes; Slack interactivity payloads are far smaller")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise PayloadError("request body is not UTF-8 form data") from None
    values = form.get("payload")
    if not values:
        raise PayloadError("missing form field 'payload' (expected application/x-www-form-urlencoded "
                           "'payload=<JSON>' as Slack sends it)")
    try:
        data = json.loads(values[0])
    except ValueError as exc:
        raise PayloadError(f"form field 'payload' is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"form field 'payload' must be a JSON object, got {type(data).__name__}")
    return data


def parse_interaction(body: bytes) -> Interaction:
    data = parse_form(body)
    kind = data.get("type")
    if kind != "block_actions":
        raise PayloadError(f"unsupported interaction type {kind!r}; this endpoint handles button clicks "
                           "(block_actions) on migration approval messages")
    user = _obj(data, "user")
    user_id = user.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise PayloadError("payload has no user.id")
    actions = data.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        raise PayloadError("payload has no actions")
    action = actions[0]
    action_id = action.get("action_id")
    if action_id not in (*DECISIONS, ACTION_OPEN):
        raise PayloadError(f"unknown action {action_id!r}; expected one of the migration approval buttons")
    ref = ApprovalRef.from_value(action.get("value")) if action_id in DECISIONS else None
    container = _obj(data, "container")
    message = _obj(data, "message")
    channel_id = container.get("channel_id") or _obj(data, "channel").get("id")
    message_ts = container.get("message_ts") or message.get("ts")
    response_url = data.get("response_url")
    blocks = message.get("blocks")
    return Interaction(
        user_id=user_id,
        user_name=str(user.get("username") or user.get("name") or ""),
        team_id=user.get("team_id") or _obj(data, "team").get("id"),
        action_id=action_id,
        ref=ref,
        channel_id=channel_id if isinstance(channel_id, str) else None,
        message_ts=message_ts if isinstance(message_ts, str) else None,
        response_url=response_url if isinstance(response_url, str) and response_url.startswith(("https://", "http://"))
        else None,
        message_blocks=blocks if isinstance(blocks, list) else [],
    )
