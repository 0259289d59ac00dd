"""The few Slack Web API calls approvals make; none of them raises.

They reuse the alerts module's client (``slack_sdk.WebClient`` on the configured Slack connection, bounded
retries: 429 honours a short ``Retry-After``, 5xx and connection errors back off briefly, 10 s
timeout), so Slack trouble costs seconds at most and is reported as a failed ``Delivery`` with a
log-safe description (status and Slack error code; never the token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from migration_engine import alerts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    ok: bool
    channel_id: str | None = None
    ts: str | None = None
    error: str | None = None


def call(conn_id: str, method: str, **kwargs: Any) -> Delivery:
    try:
        client = alerts.slack_client(conn_id)
        data = getattr(client, method)(**kwargs).data
        data = data if isinstance(data, dict) else {}
        return Delivery(True, data.get("channel"), data.get("ts"))
    except Exception as exc:  # noqa: BLE001 - Slack trouble is reported, never raised
        error = alerts.describe_error(exc)
        log.warning("slack approvals: %s failed: %s", method, error)
        return Delivery(False, error=error)


def post(conn_id: str, channel: str, text: str, blocks: list) -> Delivery:
    return call(conn_id, "chat_postMessage", channel=channel, text=text, blocks=blocks,
                unfurl_links=False, unfurl_media=False)


def update(conn_id: str, channel_id: str, ts: str, text: str, blocks: list) -> Delivery:
    return call(conn_id, "chat_update", channel=channel_id, ts=ts, text=text, blocks=blocks)


def tell_user(conn_id: str, *, text: str, response_url: str | None, channel_id: str | None,
              user_id: str | None) -> Delivery:
    """An ephemeral answer to whoever clicked: via the interaction's ``response_url``, else
    ``chat.postEphemeral``. Only they see it; the approval message is left as it is."""
    if response_url:
        try:
            from slack_sdk.webhook import WebhookClient

            response = WebhookClient(response_url, timeout=alerts.SLACK_TIMEOUT_SECONDS,
                                     retry_handlers=alerts.retry_handlers()).send_dict(
                {"response_type": "ephemeral", "replace_original": False, "text": text})
            if response.status_code == 200:
                return Delivery(True)
            log.warning("slack approvals: response_url answered HTTP %s; trying chat.postEphemeral",
                        response.status_code)
        except Exception as exc:  # noqa: BLE001
            log.warning("slack approvals: response_url failed (%s); trying chat.postEphemeral",
                        alerts.describe_error(exc))
    if channel_id and user_id:
        return call(conn_id, "chat_postEphemeral", channel=channel_id, user=user_id, text=text)
    return Delivery(False, error="no response_url and no channel/user to answer")
