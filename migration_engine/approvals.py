"""Human approvals: answer a pending HITL request in-process, and an approval task that audits itself.

``respond(...)`` records an answer exactly as the REST handler
(``PATCH .../taskInstances/{task_id}/{map_index}/hitlDetails``) does: lock the task instance, load
its ``HITLDetail`` (never through ``ti.hitl_detail``, whose lazy load raises), refuse a second
answer, set ``responded_by/responded_at/chosen_options/params_input`` and resume the parked task
with ``handle_event_submit``. It needs Airflow's metadata database (the scheduler's, or the one
``dag.test()`` uses) and is what the Slack interactivity endpoint and the tests call.

``AuditedApprovalOperator`` is ``ApprovalOperator`` plus two audit-ledger entries: when the
request is made and when it is answered (whoever answered: UI, REST, Slack, or the timeout
default). Rejecting skips everything downstream; nothing is changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator

from migration_engine.errors import MigrationError

log = logging.getLogger(__name__)

APPROVE = ApprovalOperator.APPROVE
REJECT = ApprovalOperator.REJECT


class ApprovalError(MigrationError):
    """An answer could not be recorded; the subclass says why."""


class NoPendingApproval(ApprovalError):
    """No such task instance, it is not a HITL task, or it is not waiting for input."""


class AlreadyAnswered(ApprovalError):
    """Someone answered first; a HITL request takes one answer."""


class InvalidAnswer(ApprovalError):
    """The chosen options are not among the request's options (or too many for a single choice)."""


class NotAnApprover(ApprovalError):
    """The request is assigned to specific users and the responder is not one of them."""


@dataclass(frozen=True)
class PendingApproval:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    ti_id: str
    subject: str
    body: str | None
    options: list[str]
    assigned_users: list[dict]
    created_at: datetime | None


@dataclass(frozen=True)
class RecordedAnswer:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    chosen_options: list[str]
    responded_by: dict
    responded_at: datetime
    resumed: bool


def _user(responder: str | dict) -> dict[str, str]:
    if isinstance(responder, dict):
        if not responder.get("id"):
            raise InvalidAnswer(f"responder needs an 'id', got {responder!r}")
        return {"id": str(responder["id"]), "name": str(responder.get("name") or responder["id"])}
    if not isinstance(responder, str) or not responder.strip():
        raise InvalidAnswer(f"responder must be a non-empty user id/name, got {responder!r}")
    return {"id": responder, "name": responder}


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
    session=None,
) -> RecordedAnswer:
    """Answer a pending HITL request and resume its task; raises an ApprovalError subclass otherwise.

    ``responder`` is a user id (also used as name) or ``{"id": ..., "name": ...}`` (e.g. the Slack
    user). The caller checks *who* may answer beyond ``assigned_users`` (e.g. config approvers).
    """
    from airflow.utils.session import create_session

    if isinstance(chosen_options, str):
        chosen_options = [chosen_options]
    user = _user(responder)
    if session is not None:
        return _respond(session, dag_id, run_id, task_id, list(chosen_options), user, params_input, map_index)
    with create_session(scoped=False) as s:
        return _respond(s, dag_id, run_id, task_id, list(chosen_options), user, params_input, map_index)


def _respond(session, dag_id, run_id, task_id, chosen_options, user, params_input, map_index) -> RecordedAnswer:
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    where = f"{dag_id} / {run_id} / {task_id}" + (f"[{map_index}]" if map_index >= 0 else "")
    ti_id = session.scalar(select(TaskInstance.id).where(
        TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id,
        TaskInstance.map_index == map_index))
    if ti_id is None:
        raise NoPendingApproval(f"no task instance {where}")
    # Same lock order as the REST handler: the task instance first, then its HITL row.
    ti = session.get(TaskInstance, ti_id, with_for_update=True)
    detail = session.get(HITLDetail, ti_id, with_for_update=True)
    if detail is None:
        raise NoPendingApproval(f"{where} has not asked for input (state {ti.state}); it is not a human-approval "
                                f"task or has not started waiting yet")
    if detail.responded_at is not None:
        who = (detail.responded_by or {}).get("name", "?")
        raise AlreadyAnswered(f"{where} was already answered {detail.chosen_options} by {who} at "
                              f"{detail.responded_at.isoformat()}")
    if ti.state not in (TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED):
        raise NoPendingApproval(f"{where} is in state {ti.state}, not waiting for input")
    allowed = list(detail.options or [])
    invalid = sorted(set(chosen_options) - set(allowed))
    if not chosen_options or invalid:
        raise InvalidAnswer(f"invalid answer {chosen_options} for {where}; allowed options: {allowed}")
    if not detail.multiple and len(chosen_options) > 1:
        raise InvalidAnswer(f"{where} takes a single option, got {chosen_options}")
    assigned = {u.get("id") for u in (detail.assignees or [])}
    if assigned and user["id"] not in assigned:
        raise NotAnApprover(f"{user['name']} (id {user['id']}) is not assigned to answer {where}")
    if params_input is not None and not isinstance(params_input, dict):
        raise InvalidAnswer(f"params_input must be a mapping, got {type(params_input).__name__}")

    detail.responded_by = user
    detail.responded_at = datetime.now(UTC)
    detail.chosen_options = chosen_options
    detail.params_input = params_input or {}
    session.add(detail)
    handle_event_submit(TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session)
    session.flush()
    log.info("approval %s answered %s by %s", where, chosen_options, user["name"])
    return RecordedAnswer(dag_id, run_id, task_id, map_index, chosen_options, user, detail.responded_at,
                          resumed=ti.state == TaskInstanceState.SCHEDULED)


def _audit(gate: str, action: str, actor: str, context: Any, details: dict, reason: str) -> None:
    from migration_engine import control, db
    from migration_engine.airflow.dags import config

    cfg = config()
    ti = context["ti"]
    with db.connection(cfg.connections.legacy) as conn:
        if not control.control_schema_exists(conn, cfg.control_schema):
            raise control.ControlError(f"cannot audit approval {gate!r}: control schema {cfg.control_schema} is "
                                       f"missing; run the migration_setup DAG first")
        control.audit(conn, cfg.control_schema, actor=actor, action=action, target=gate,
                      details={"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id,
                               "map_index": ti.map_index, **details}, reason=reason)


class AuditedApprovalOperator(ApprovalOperator):
    """ApprovalOperator whose request and decision are written to the audit ledger.

    ``gate`` names the approval (``phase1_rollback``, ...). Reject (or the timeout default, when
    ``defaults=["Reject"]``) skips every downstream task; the run still succeeds, having changed
    nothing. If the ledger cannot be written the task fails: an unaudited approval must not act.
    """

    def __init__(self, *, gate: str, ignore_downstream_trigger_rules: bool = True, **kwargs):
        super().__init__(ignore_downstream_trigger_rules=ignore_downstream_trigger_rules, **kwargs)
        self.gate = gate

    def execute(self, context):
        _audit(self.gate, "approval.requested", f"airflow:{context['ti'].dag_id}", context,
               {"subject": self.subject, "options": self.options}, reason=self.subject)
        return super().execute(context)

    def execute_complete(self, context, event: dict[str, Any]) -> Any:
        if "error" not in event:
            chosen = list(event.get("chosen_options") or [])
            user = event.get("responded_by_user") or None
            timed_out = bool(event.get("timedout"))
            actor = "timeout-default" if timed_out or not user else f"{user.get('name')} ({user.get('id')})"
            decision = "approved" if chosen == [self.APPROVE] else "rejected"
            responded_at = event.get("responded_at")
            _audit(self.gate, f"approval.{decision}", actor, context, {
                "chosen_options": chosen, "params_input": event.get("params_input") or {},
                "responded_at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at,
                "timed_out": timed_out}, reason=self.subject)
        else:
            _audit(self.gate, "approval.error", "airflow", context, {"event": {k: str(v) for k, v in event.items()}},
                   reason=self.subject)
        return super().execute_complete(context, event)
