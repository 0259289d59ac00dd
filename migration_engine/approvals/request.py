"""Posting an approval request to Slack and recording it (no Airflow; the notifier passes plain values).

The message's channel id, ts and blocks are stored in ``<control_schema>.slack_approvals`` so the
decision (Slack click, Airflow UI or timeout) can update it later. Slack or the control DB being
down is logged, never raised: the approval is still in Airflow's Required Actions page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from migration_engine.approvals import messages, slackio, store
from migration_engine.approvals.payload import ApprovalRef
from migration_engine.approvals.points import approvers_for

log = logging.getLogger(__name__)


def post_request(cfg, ref: ApprovalRef, *, subject: str, body: str | None, figures: Mapping[str, Any],
                 notes: list[str], link: str | None, expires_at: datetime | None, safe_default: str,
                 channel: str | None = None) -> slackio.Delivery:
    """Post the Block Kit request (Approve / Reject buttons) and remember where it is."""
    text, blocks = messages.request_message(
        ref=ref, subject=subject, body=body, figures=figures, approvers=approvers_for(cfg, ref.approval_point),
        link=link, expires_at=expires_at, safe_default=safe_default, figures_note="; ".join(notes) or None,
    )
    channel = channel or cfg.approvals.channel or cfg.slack.warning_channel
    delivery = slackio.post(cfg.connections.slack, channel, text, blocks)
    if delivery.ok:
        log.info("approval request for %s posted to %s (ts %s)", ref.approval_point, channel, delivery.ts)
    else:
        log.error("approval request for %s NOT posted to Slack (%s): answer it in the Airflow UI: %s",
                  ref.approval_point, delivery.error, link)
    _save(cfg, ref, subject, delivery, blocks, expires_at)
    return delivery


def _save(cfg, ref: ApprovalRef, subject: str, delivery: slackio.Delivery, blocks: list,
          expires_at: datetime | None) -> None:
    try:
        from migration_engine import control_schema, db

        with db.connection(cfg.connections.legacy, application_name="migration-approvals") as conn:
            control_schema.require_current(conn, cfg.control_schema)
            store.save_request(conn, cfg.control_schema, ref, subject=subject, channel=delivery.channel_id,
                               message_ts=delivery.ts, blocks=blocks,
                               delivery_error=None if delivery.ok else delivery.error, expires_at=expires_at)
    except Exception as exc:  # noqa: BLE001
        from migration_engine.alerts import describe_error

        log.error("approval request for %s not recorded in the control schema (%s); a Slack click still works, "
                  "the Airflow UI too", ref.approval_point, describe_error(exc))
