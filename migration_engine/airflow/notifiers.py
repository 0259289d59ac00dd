"""``SlackApprovalNotifier``: when a HITL approval task starts waiting, post the request to Slack.

HITL operators call their notifiers once, right after writing the request and before parking the
task in ``awaiting_input`` (``HITLOperator.execute``). This class only reads the Airflow side - the
task's rendered subject/body, its timeout and safe default, the upstream XComs, the link to the
approval in the UI - and hands plain values to the engine (``approvals.figures.collect`` and
``approvals.request.post_request``: Block Kit, Slack, the ``slack_approvals`` row).

It never raises: HITLOperator would fail the task if a notifier raised, and Slack or the control DB
being down must not fail or block a migration step - the approval is still in Airflow's Required
Actions page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseNotifier


class SlackApprovalNotifier(BaseNotifier):
    """Post the approval request for the HITL task it is attached to (``notifiers=[...]``)."""

    template_fields = ("figures", "channel")

    def __init__(
        self,
        *,
        approval_point: str,
        figures: Mapping[str, Any] | None = None,
        figures_from: Sequence[str] = (),
        gate_results: Sequence[str] = (),
        channel: str | None = None,
    ):
        super().__init__()
        self.approval_point = approval_point
        self.figures = dict(figures or {})
        self.figures_from = list(figures_from)
        self.gate_results = list(gate_results)
        self.channel = channel
        self.last_delivery = None  # for tests and logs: the Delivery of the last post

    def notify(self, context) -> None:
        try:
            self._notify(context)
        except Exception as exc:  # noqa: BLE001 - never fail the approval task because of Slack
            from migration_engine.alerts import describe_error

            self.log.error("approval request could not be posted to Slack: %s; answer it in the Airflow UI "
                           "(Required Actions)", describe_error(exc))

    def _notify(self, context) -> None:
        from migration_engine.approvals import figures, request
        from migration_engine.config import load_config

        cfg = load_config()
        ti = context["ti"]
        task = context["task"]
        ref = approval_ref(ti, self.approval_point)
        defaults = getattr(task, "defaults", None) or []
        values, notes = figures.collect(cfg, figures=self.figures, figures_from=self.figures_from,
                                        pull=lambda task_id: ti.xcom_pull(task_ids=task_id),
                                        gate_results=self.gate_results)
        self.last_delivery = request.post_request(
            cfg, ref, subject=str(getattr(task, "subject", "") or ti.task_id), body=getattr(task, "body", None),
            figures=values, notes=notes, link=ui_link(task, ti, cfg), expires_at=_expires_at(task),
            safe_default=defaults[0] if defaults else "none (the task fails)", channel=self.channel)


def approval_ref(ti, approval_point: str):
    from migration_engine.approvals.payload import ApprovalRef

    return ApprovalRef(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                       map_index=ti.map_index if ti.map_index is not None else -1, ti_id=str(ti.id),
                       approval_point=approval_point)


def ui_link(task, ti, cfg) -> str | None:
    """The approval in the UI's Required Actions (a HITL task), else the task instance."""
    try:
        return task.generate_link_to_ui(task_instance=ti, base_url=cfg.slack.airflow_base_url)
    except Exception:  # noqa: BLE001 - not a HITL operator, or no base url: link to the task instead
        from migration_engine.alerts import airflow_url

        return airflow_url(cfg.slack.airflow_base_url, ti.dag_id, ti.run_id, ti.task_id, ti.map_index)


def _expires_at(task) -> datetime | None:
    raw = (getattr(task, "hitl_summary_extra", None) or {}).get("timeout_datetime")
    if raw:
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass
    timeout = getattr(task, "response_timeout", None)
    return datetime.now(UTC) + timeout if timeout else None
