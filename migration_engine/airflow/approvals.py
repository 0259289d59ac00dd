"""Human approvals in Airflow: the one approval task DAGs use, and recording an answer in Airflow.

``approval(task_id, subject, body, approval_point=..., figures_from=...)`` is what DAG files call.
It builds ``MigrationApprovalOperator``: Airflow's own ``ApprovalOperator`` (so the request is in
the UI's Required Actions page and can be answered there or over the REST API) with

* the ``SlackApprovalNotifier`` (Block Kit request with Approve / Reject buttons);
* ``response_timeout`` from ``approvals.response_timeout`` and the safe default **Reject**: in
  Airflow 3.3 the *scheduler* enforces the timeout (its ``awaiting_input`` sweep writes the defaults
  as the response and resumes the task), so nothing proceeds without a human;
* ``ignore_downstream_trigger_rules=True``: a rejection skips everything downstream, whatever its
  trigger rule; the run still succeeds, having changed nothing;
* two audit-ledger entries, when the request is made and when it is answered (whoever answered: UI,
  REST, Slack or the timeout default); if the ledger cannot be written the task fails - an
  unaudited approval must not act;
* outcome bookkeeping in ``execute_complete`` (never raising): a timeout pages on-call (critical)
  and marks the Slack message timed out; an Airflow UI decision is shown on the Slack message.

``respond(...)`` records an answer exactly as the REST handler
(``PATCH .../taskInstances/{task_id}/{map_index}/hitlDetails``) does: lock the task instance, load
its ``HITLDetail`` (never through ``ti.hitl_detail``, whose lazy load raises), refuse a second
answer, set ``responded_by/responded_at/chosen_options/params_input`` and resume the parked task
with ``handle_event_submit``. The Slack endpoint (through ``airflow_side()``) and the tests call it.

What an approval point is, its approvers, the message, the store and the rules for an answer are
the engine's (``migration_engine.approvals``); this module only does the Airflow part.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from migration_engine.airflow.notifiers import SlackApprovalNotifier, approval_ref, ui_link
from migration_engine.approvals.answers import (
    AlreadyAnswered,
    ApprovalError,
    InvalidAnswer,
    NoPendingApproval,
    NotAnApprover,
    PendingApproval,
    RecordedAnswer,
)

__all__ = ["APPROVE", "REJECT", "AlreadyAnswered", "ApprovalError", "InvalidAnswer", "MigrationApprovalOperator",
           "NoPendingApproval", "NotAnApprover", "PendingApproval", "RecordedAnswer", "airflow_side", "approval",
           "current_ti_id", "pending_approvals", "respond"]

log = logging.getLogger(__name__)

APPROVE = ApprovalOperator.APPROVE
REJECT = ApprovalOperator.REJECT


# --- the approval task ----------------------------------------------------------------------
class MigrationApprovalOperator(ApprovalOperator):
    """``ApprovalOperator`` for a named approval point: Slack request, audit ledger, safe default Reject."""

    def __init__(
        self,
        *,
        approval_point: str,
        figures: Mapping[str, Any] | None = None,
        figures_from: Sequence[str] = (),
        gate_results: Sequence[str] = (),
        channel: str | None = None,
        cfg=None,
        **kwargs: Any,
    ) -> None:
        from migration_engine.approvals.points import check_approval_point, check_config_approval_points
        from migration_engine.config import load_config

        cfg = cfg or load_config()
        check_approval_point(approval_point, cfg)
        check_config_approval_points(cfg)
        defaults = kwargs.pop("defaults", REJECT)
        if defaults not in (REJECT, [REJECT]):
            raise ValueError(f"approval point {approval_point!r}: the default (taken on timeout) must be 'Reject', "
                             f"got {defaults!r}; a migration step never proceeds without a human")
        if kwargs.get("fail_on_reject"):
            raise ValueError("fail_on_reject is not supported: a rejection skips downstream tasks, it is not a failure")
        if "assigned_users" in kwargs:
            raise ValueError(f"approval point {approval_point!r}: assigned_users come from approvals.approvers in the "
                             "config (one approver model for Slack and Airflow); do not pass them")
        kwargs["assigned_users"] = _assigned_users(cfg, approval_point)
        kwargs.setdefault("response_timeout", cfg.approvals.response_timeout)
        kwargs.setdefault("ignore_downstream_trigger_rules", True)
        notifiers = list(kwargs.pop("notifiers", None) or [])
        notifiers.insert(0, SlackApprovalNotifier(approval_point=approval_point, figures=figures,
                                                  figures_from=figures_from, gate_results=gate_results,
                                                  channel=channel))
        super().__init__(defaults=REJECT, notifiers=notifiers, **kwargs)
        self.approval_point = approval_point

    def _ids(self, context) -> dict[str, Any]:
        ti = context["ti"]
        return {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "map_index": ti.map_index}

    def execute(self, context):
        from migration_engine.approvals import outcome
        from migration_engine.config import load_config

        outcome.audit_request(load_config(), self.approval_point, self._ids(context), subject=self.subject,
                              options=self.options)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        from migration_engine.approvals import outcome
        from migration_engine.config import load_config

        cfg = load_config()
        outcome.audit_decision(cfg, self.approval_point, self._ids(context), event, subject=self.subject)
        try:
            self._settle(context, event, cfg)
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not change the decision's effect
            from migration_engine.alerts import describe_error

            self.log.error("approval outcome bookkeeping failed: %s", describe_error(exc))
        return super().execute_complete(context=context, event=event)

    def _settle(self, context, event: dict[str, Any], cfg) -> None:
        """The Slack message shows the decision; a timeout pages on-call."""
        from migration_engine.approvals import outcome
        from migration_engine.approvals.answers import decision_from_event

        if "error" in event:
            return
        ti = context["ti"]
        ref = approval_ref(ti, self.approval_point)
        decision = decision_from_event(event, getattr(self, "defaults", None))
        subject = str(self.subject or ti.task_id)
        outcome.settle_decision(cfg, ref, decision, subject=subject)
        if decision.via == "timeout":
            outcome.timeout_page(cfg, ref, subject=subject, decision=decision.decision,
                                 timeout=getattr(self, "response_timeout", None), link=ui_link(self, ti, cfg))


def _assigned_users(cfg, approval_point: str):
    """HITL ``assigned_users`` from ``approvals.approvers``: the Airflow UI and REST API answer 403 to
    anyone else. None (nobody configured): Airflow's own permissions decide, Slack answers nobody."""
    from airflow.sdk.execution_time.hitl import HITLUser

    from migration_engine.approvals.points import assigned_users

    users = assigned_users(cfg, approval_point)
    if users is None:
        log.warning("approval point %r has no approvers in approvals.approvers: any Airflow user allowed to answer "
                    "Required Actions can answer it, and nobody can from Slack", approval_point)
        return None
    return [HITLUser(id=u["id"], name=u["name"]) for u in users]


def approval(
    task_id: str,
    subject: str,
    body: str | None = None,
    *,
    approval_point: str,
    figures_from: Sequence[str] = (),
    figures: Mapping[str, Any] | None = None,
    gate_results: Sequence[str] = (),
    response_timeout: timedelta | None = None,
    channel: str | None = None,
    **kwargs: Any,
) -> MigrationApprovalOperator:
    """The approval task for ``approval_point`` (names: ``migration_engine.approvals.points``).

    ``subject``/``body`` are templated (Markdown in the Airflow UI, mrkdwn-escaped in Slack). The
    numbers behind the decision: ``figures_from`` (upstream task ids whose XCom is a
    ``GateResult.as_dict()`` or a dict), ``figures`` (templated dict) and ``gate_results`` (machine
    gates whose latest ``gate_results`` row is shown). ``response_timeout`` defaults to
    ``approvals.response_timeout``; ``channel`` to ``approvals.channel`` or ``slack.warning_channel``.
    Other keyword arguments go to ``ApprovalOperator``.
    """
    if response_timeout is not None:
        kwargs["response_timeout"] = response_timeout
    return MigrationApprovalOperator(task_id=task_id, subject=subject, body=body, approval_point=approval_point,
                                     figures=figures, figures_from=list(figures_from), gate_results=gate_results,
                                     channel=channel, **kwargs)


# --- answering in Airflow's metadata DB ---------------------------------------------------
def pending_approvals(dag_id: str | None = None, *, session=None) -> list[PendingApproval]:
    """Task instances waiting for a human answer (state awaiting_input/deferred, no response yet)."""
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    def _query(s) -> list[PendingApproval]:
        q = (select(TaskInstance, HITLDetail).join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
             .where(TaskInstance.state.in_([TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED]),
                    HITLDetail.responded_at.is_(None)))
        if dag_id:
            q = q.where(TaskInstance.dag_id == dag_id)
        return [PendingApproval(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, str(ti.id), d.subject, d.body,
                                list(d.options or []), list(d.assignees or []), d.created_at)
                for ti, d in s.execute(q).all()]

    if session is not None:
        return _query(session)
    with create_session(scoped=False) as s:
        return _query(s)


def respond(
    dag_id: str,
    run_id: str,
    task_id: str,
    chosen_options: list[str] | str,
    responder: str | dict,
    params_input: dict[str, Any] | None = None,
    map_index: int = -1,
    *,
    assignee: str | None = None,
    session=None,
) -> RecordedAnswer:
    """Answer a pending HITL request and resume its task; raises an ApprovalError subclass otherwise.

    ``responder`` is a user id (also used as name) or ``{"id": ..., "name": ...}`` (e.g. the Slack
    user). The request's stored ``assigned_users`` are enforced as the REST API does; ``assignee`` is
    the Airflow user the responder acts as when it is not an Airflow login (the Slack endpoint passes
    the approver's configured Airflow user), checked against them the same way.
    """
    from airflow.utils.session import create_session

    from migration_engine.approvals.answers import responder_user

    if isinstance(chosen_options, str):
        chosen_options = [chosen_options]
    user = responder_user(responder)
    if session is not None:
        return _respond(session, dag_id, run_id, task_id, list(chosen_options), user, params_input, map_index,
                        assignee)
    with create_session(scoped=False) as s:
        return _respond(s, dag_id, run_id, task_id, list(chosen_options), user, params_input, map_index, assignee)


def _respond(session, dag_id, run_id, task_id, chosen_options, user, params_input, map_index,
             assignee=None) -> RecordedAnswer:
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.state import TaskInstanceState

    from migration_engine.approvals.answers import check_answer, check_not_answered, where

    place = where(dag_id, run_id, task_id, map_index)
    ti_id = _ti_id(session, dag_id, run_id, task_id, map_index)
    if ti_id is None:
        raise NoPendingApproval(f"no task instance {place}")
    # Same lock order as the REST handler: the task instance first, then its HITL row.
    ti = session.get(TaskInstance, ti_id, with_for_update=True)
    detail = session.get(HITLDetail, ti_id, with_for_update=True)
    if detail is None:
        raise NoPendingApproval(f"{place} has not asked for input (state {ti.state}); it is not a human-approval "
                                f"task or has not started waiting yet")
    check_not_answered(place, responded_at=detail.responded_at, responded_by=detail.responded_by,
                       chosen_options=detail.chosen_options)
    if ti.state not in (TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED):
        raise NoPendingApproval(f"{place} is in state {ti.state}, not waiting for input")
    check_answer(place, chosen_options, user, options=list(detail.options or []), multiple=bool(detail.multiple),
                 assignees=detail.assignees, params_input=params_input, assignee=assignee)

    detail.responded_by = user
    detail.responded_at = datetime.now(UTC)
    detail.chosen_options = chosen_options
    detail.params_input = params_input or {}
    session.add(detail)
    handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
    session.flush()
    log.info("approval %s answered %s by %s", place, chosen_options, user["name"])
    return RecordedAnswer(dag_id, run_id, task_id, map_index, chosen_options, user, detail.responded_at,
                          resumed=ti.state == TaskInstanceState.SCHEDULED)


def _ti_id(session, dag_id: str, run_id: str, task_id: str, map_index: int):
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    return session.scalar(select(TaskInstance.id).where(
        TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id,
        TaskInstance.map_index == map_index))


def current_ti_id(ref) -> str | None:
    """The id of the current try of the task instance a Slack button names (None: no such task)."""
    from airflow.utils.session import create_session

    with create_session(scoped=False) as session:
        ti_id = _ti_id(session, ref.dag_id, ref.run_id, ref.task_id, ref.map_index)
    return str(ti_id) if ti_id is not None else None


def airflow_side():
    """What the engine's Slack interactivity handler needs from Airflow."""
    from airflow.sdk.log import mask_secret

    from migration_engine.approvals.interactivity import AirflowSide

    return AirflowSide(respond=respond, current_ti_id=current_ti_id, mask_secret=mask_secret)
