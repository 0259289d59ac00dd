"""``SlackApprovalNotifier``: when a HITL approval task starts waiting, post the request to Slack.

HITL operators call their notifiers once, right after writing the request and before parking the
task in ``awaiting_input`` (``HITLOperator.execute``). The message shows the task's rendered subject
and body, the gate and its meaning, the figures that justify the decision (passed in, pulled from
upstream XComs - a ``GateResult.as_dict()`` or any dict - and/or the latest ``gate_results`` rows),
the approvers, the deadline and safe default, Approve / Reject buttons whose values carry
dag_id/run_id/task_id/map_index/ti id and gate, and a link to the approval in the Airflow UI.

The message's channel id, ts and blocks are stored in ``<control_schema>.slack_approvals`` so the
decision (Slack click, Airflow UI or timeout) can update it later.

It never raises: HITLOperator would fail the task if a notifier raised, and Slack or the control DB
being down must not fail or block a migration step - the approval is still in Airflow's Required
Actions page. Failures are logged and the delivery error is stored with the request when possible.
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
        gate: str,
        figures: Mapping[str, Any] | None = None,
        figures_from: Sequence[str] = (),
        gate_results: Sequence[str] = (),
        channel: str | None = None,
    ):
        super().__init__()
        self.gate = gate
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

    # --- internals ---------------------------------------------------------------------------
    def _notify(self, context) -> None:
        from migration_engine.config import load_config
        from migration_engine.slack_approvals import messages, slackio
        from migration_engine.slack_approvals.gates import approvers_for
        from migration_engine.slack_approvals.payload import ApprovalRef

        cfg = load_config()
        ti = context["ti"]
        task = context["task"]
        ref = ApprovalRef(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                          map_index=ti.map_index if ti.map_index is not None else -1, ti_id=str(ti.id),
                          gate=self.gate)
        subject = str(getattr(task, "subject", "") or ti.task_id)
        body = getattr(task, "body", None)
        defaults = getattr(task, "defaults", None) or []
        safe_default = defaults[0] if defaults else "none (the task fails)"
        expires_at = self._expires_at(task)
        figures, notes = self._figures(context, cfg)
        link = self._link(task, ti, cfg)
        text, blocks = messages.request_message(
            ref=ref, subject=subject, body=body, figures=figures, approvers=approvers_for(cfg, self.gate),
            link=link, expires_at=expires_at, safe_default=safe_default, figures_note="; ".join(notes) or None,
        )
        channel = self.channel or cfg.approvals.channel or cfg.slack.warning_channel
        delivery = slackio.post(cfg.connections.slack, channel, text, blocks)
        self.last_delivery = delivery
        if delivery.ok:
            self.log.info("approval request for gate %s posted to %s (ts %s)", self.gate, channel, delivery.ts)
        else:
            self.log.error("approval request for gate %s NOT posted to Slack (%s): answer it in the Airflow UI: %s",
                           self.gate, delivery.error, link)
        self._save(cfg, ref, subject, delivery, blocks, expires_at)

    @staticmethod
    def _expires_at(task) -> datetime | None:
        raw = (getattr(task, "hitl_summary_extra", None) or {}).get("timeout_datetime")
        if raw:
            try:
                return datetime.fromisoformat(raw)
            except ValueError:
                pass
        timeout = getattr(task, "response_timeout", None)
        return datetime.now(UTC) + timeout if timeout else None

    @staticmethod
    def _link(task, ti, cfg) -> str | None:
        try:
            return task.generate_link_to_ui(task_instance=ti, base_url=cfg.slack.airflow_base_url)
        except Exception:  # noqa: BLE001 - not a HITL operator, or no base url: link to the task instead
            from migration_engine.alerts import airflow_url

            return airflow_url(cfg.slack.airflow_base_url, ti.dag_id, ti.run_id, ti.task_id, ti.map_index)

    def _figures(self, context, cfg) -> tuple[dict[str, Any], list[str]]:
        figures: dict[str, Any] = {}
        notes: list[str] = []

        def add(source: str, values: Mapping[str, Any]) -> None:
            for key, value in values.items():
                figures[str(key) if key not in figures else f"{source}.{key}"] = value

        def add_result(source: str, value: Any) -> None:
            if isinstance(value, Mapping) and isinstance(value.get("figures"), Mapping):
                status = value.get("status")
                if status:
                    notes.append(f"{value.get('gate') or source}: {status}" +
                                 (f" - {value['reason']}" if value.get("reason") else ""))
                add(source, value["figures"])
            elif isinstance(value, Mapping):
                add(source, value)
            elif value is not None:
                figures[source] = value

        add("figures", self.figures)
        ti = context["ti"]
        for task_id in self.figures_from:
            try:
                add_result(task_id, ti.xcom_pull(task_ids=task_id))
            except Exception as exc:  # noqa: BLE001
                notes.append(f"figures from {task_id} unavailable ({type(exc).__name__})")
        if self.gate_results:
            try:
                from migration_engine import db
                from migration_engine.slack_approvals import store

                with db.connection(cfg.connections.legacy, application_name="migration-approvals") as conn:
                    latest = store.latest_gate_results(conn, cfg.control_schema, self.gate_results)
                for name in self.gate_results:
                    if name in latest:
                        add_result(name, {"gate": name, **latest[name]})
                    else:
                        notes.append(f"{name}: never evaluated")
            except Exception as exc:  # noqa: BLE001
                notes.append(f"gate results unavailable ({type(exc).__name__})")
        return figures, notes

    def _save(self, cfg, ref, subject, delivery, blocks, expires_at) -> None:
        try:
            from migration_engine import control_schema, db
            from migration_engine.slack_approvals import store

            with db.connection(cfg.connections.legacy, application_name="migration-approvals") as conn:
                control_schema.require_current(conn, cfg.control_schema)
                store.save_request(conn, cfg.control_schema, ref, subject=subject, channel=delivery.channel_id,
                                   message_ts=delivery.ts, blocks=blocks,
                                   delivery_error=None if delivery.ok else delivery.error, expires_at=expires_at)
        except Exception as exc:  # noqa: BLE001
            from migration_engine.alerts import describe_error

            self.log.error("approval request for gate %s not recorded in the control schema (%s); a Slack click "
                           "still works, the Airflow UI too", self.gate, describe_error(exc))
