"""The one way phase DAGs ask a human: ``approval_task(...)`` -> ``MigrationApprovalOperator``.

It is ``migration_engine.approvals.AuditedApprovalOperator`` - Airflow's own ``ApprovalOperator``
(so the request is in the UI's Required Actions page and can be answered there or over the REST
API) that writes the request and the decision to the audit ledger - with:

* the ``SlackApprovalNotifier`` (Block Kit request with Approve / Reject buttons);
* ``response_timeout`` from ``approvals.response_timeout`` and the safe default **Reject**: in
  Airflow 3.3 the *scheduler* enforces the timeout (its ``awaiting_input`` sweep writes the defaults
  as the response and resumes the task), so nothing proceeds without a human;
* ``ignore_downstream_trigger_rules=True``: a rejection skips everything downstream, whatever its
  trigger rule;
* outcome bookkeeping in ``execute_complete`` (never raising): a timeout pages on-call (critical
  alert) and marks the Slack message timed out; a decision taken in the Airflow UI is shown on the
  Slack message; a Slack decision was already shown by the interactivity endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from migration_engine.approvals import AuditedApprovalOperator
from migration_engine.slack_approvals.notifier import SlackApprovalNotifier

log = logging.getLogger(__name__)

SLACK_RESPONDER_PREFIX = "slack:"


class MigrationApprovalOperator(AuditedApprovalOperator):
    """``AuditedApprovalOperator`` (ledger entries for request and decision) + Slack, for a named gate."""

    def __init__(
        self,
        *,
        gate: str,
        figures: Mapping[str, Any] | None = None,
        figures_from: Sequence[str] = (),
        gate_results: Sequence[str] = (),
        channel: str | None = None,
        cfg=None,
        **kwargs: Any,
    ) -> None:
        from migration_engine.config import load_config
        from migration_engine.slack_approvals.gates import check_config_gates, check_gate

        cfg = cfg or load_config()
        check_gate(gate, cfg)
        check_config_gates(cfg)
        defaults = kwargs.pop("defaults", ApprovalOperator.REJECT)
        if defaults not in (ApprovalOperator.REJECT, [ApprovalOperator.REJECT]):
            raise ValueError(f"approval gate {gate!r}: the default (taken on timeout) must be 'Reject', got "
                             f"{defaults!r}; a migration step never proceeds without a human")
        if kwargs.get("fail_on_reject"):
            raise ValueError("fail_on_reject is not supported: a rejection skips downstream tasks, it is not a failure")
        kwargs.setdefault("response_timeout", cfg.approvals.response_timeout)
        kwargs.setdefault("ignore_downstream_trigger_rules", True)
        notifiers = list(kwargs.pop("notifiers", None) or [])
        notifiers.insert(0, SlackApprovalNotifier(gate=gate, figures=figures, figures_from=figures_from,
                                                  gate_results=gate_results, channel=channel))
        super().__init__(gate=gate, defaults=ApprovalOperator.REJECT, notifiers=notifiers, **kwargs)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        try:
            record_outcome(self, context, event)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not change the decision's effect
            from migration_engine.alerts import describe_error

            self.log.error("approval outcome bookkeeping failed: %s", describe_error(exc))
        return super().execute_complete(context=context, event=event)


def approval_task(
    task_id: str,
    subject: str,
    body: str | None = None,
    *,
    gate: str,
    figures: Mapping[str, Any] | None = None,
    figures_from: Sequence[str] = (),
    gate_results: Sequence[str] = (),
    response_timeout: timedelta | None = None,
    channel: str | None = None,
    **kwargs: Any,
) -> MigrationApprovalOperator:
    """A configured approval task for ``gate``.

    ``subject``/``body`` are templated (Markdown in the Airflow UI, mrkdwn-escaped in Slack).
    ``figures`` (templated dict), ``figures_from`` (upstream task ids whose XCom is a
    ``GateResult.as_dict()`` or a dict) and ``gate_results`` (gate names whose latest
    ``gate_results`` row is shown) supply the numbers behind the decision. ``response_timeout``
    defaults to ``approvals.response_timeout``; ``channel`` to ``approvals.channel`` or
    ``slack.warning_channel``. Other keyword arguments go to ``ApprovalOperator``.
    """
    if response_timeout is not None:
        kwargs["response_timeout"] = response_timeout
    return MigrationApprovalOperator(task_id=task_id, subject=subject, body=body, gate=gate, figures=figures,
                                     figures_from=figures_from, gate_results=gate_results, channel=channel,
                                     **kwargs)


# --- outcome bookkeeping -------------------------------------------------------------------
def _outcome(task, event: dict[str, Any]) -> tuple[str, str, str | None, str | None, datetime]:
    """(decision, via, user id, user name, at) from the resume event."""
    timed_out = bool(event.get("timedout")) or event.get("error_type") == "timeout"
    chosen = event.get("chosen_options") or list(getattr(task, "defaults", None) or [ApprovalOperator.REJECT])
    at = event.get("responded_at")
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    at = at if isinstance(at, datetime) else datetime.now(UTC)
    if timed_out:
        return chosen[0], "timeout", None, None, at
    user = event.get("responded_by_user") or {}
    user_id = str(user.get("id") or "") or None
    name = user.get("name")
    if user_id and user_id.startswith(SLACK_RESPONDER_PREFIX):
        return chosen[0], "slack", user_id[len(SLACK_RESPONDER_PREFIX):], name, at
    return chosen[0], "airflow", user_id, name, at


def record_outcome(task, context, event: dict[str, Any]) -> None:
    """Ledger, Slack message and (on timeout) the critical page for a resumed approval task."""
    from migration_engine.config import load_config
    from migration_engine.slack_approvals import outcome
    from migration_engine.slack_approvals.payload import ApprovalRef

    cfg = load_config()
    ti = context["ti"]
    gate = getattr(task, "gate", "unknown")
    ref = ApprovalRef(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id,
                      map_index=ti.map_index if ti.map_index is not None else -1, ti_id=str(ti.id), gate=gate)
    decision, via, user_id, user_name, at = _outcome(task, event)
    subject = str(getattr(task, "subject", "") or ti.task_id)
    try:
        outcome.settle(cfg, ref, subject=subject, decision=decision, via=via, user_id=user_id,
                       user_name=user_name, at=at)
    except Exception as exc:  # noqa: BLE001
        from migration_engine.alerts import describe_error

        log.error("approval %s: decision not recorded in the control schema: %s", ref.key, describe_error(exc))
    if via == "timeout":
        _page_timeout(task, ti, cfg, ref, subject, decision)


def _page_timeout(task, ti, cfg, ref, subject: str, decision: str) -> None:
    from migration_engine.alerts import send_alert
    from migration_engine.slack_approvals.gates import approvers_for

    timeout = getattr(task, "response_timeout", None)
    try:
        link = task.generate_link_to_ui(task_instance=ti, base_url=cfg.slack.airflow_base_url)
    except Exception:  # noqa: BLE001 - the alert still links the run
        link = None
    approvers = approvers_for(cfg, ref.gate)
    text = (f"Nobody answered the *{ref.gate}* approval \"{subject}\" within {timeout}. The gate took its safe "
            f"default *{decision}*: the migration does NOT proceed past this step. Clear the task in Airflow to "
            "ask again once someone can decide.")
    figures = {"gate": ref.gate, "waited": str(timeout) if timeout else "-", "safe default taken": decision,
               "approvers": ", ".join(approvers) if approvers else "none configured"}
    result = send_alert("critical", f"Approval timed out: {subject}", text, figures=figures, dag_id=ref.dag_id,
                        task_id=ref.task_id, run_id=ref.run_id, link=link, link_text="Approval in Airflow",
                        cfg=cfg, map_index=ref.map_index if ref.map_index >= 0 else None)
    if not result.ok:
        log.error("approval %s timed out and the critical page could not be delivered (%s)", ref.key, result.error)

