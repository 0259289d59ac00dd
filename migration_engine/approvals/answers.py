"""What an answer to an approval request is, and the rules it must pass (no Airflow, no I/O).

The Airflow layer (``migration_engine.airflow.approvals.respond``) loads the pending request from
Airflow's metadata DB and records the answer there; the checks that decide whether an answer is
acceptable (one answer only, options of the request, single choice, assigned users) live here so
they are the same for the Slack endpoint, the tests and any other caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from migration_engine.errors import MigrationError

APPROVE = "Approve"  # the option names of Airflow's ApprovalOperator
REJECT = "Reject"
SLACK_RESPONDER_PREFIX = "slack:"  # responded_by.id of an answer given in Slack


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


def where(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    return f"{dag_id} / {run_id} / {task_id}" + (f"[{map_index}]" if map_index >= 0 else "")


def responder_user(responder: str | dict) -> dict[str, str]:
    """``{"id", "name"}`` of whoever answers: a user id (also the name) or such a mapping."""
    if isinstance(responder, dict):
        if not responder.get("id"):
            raise InvalidAnswer(f"responder needs an 'id', got {responder!r}")
        return {"id": str(responder["id"]), "name": str(responder.get("name") or responder["id"])}
    if not isinstance(responder, str) or not responder.strip():
        raise InvalidAnswer(f"responder must be a non-empty user id/name, got {responder!r}")
    return {"id": responder, "name": responder}


def check_not_answered(place: str, *, responded_at: datetime | None, responded_by: Mapping | None,
                       chosen_options: Sequence[str] | None) -> None:
    if responded_at is not None:
        who = (responded_by or {}).get("name", "?")
        raise AlreadyAnswered(f"{place} was already answered {list(chosen_options or [])} by {who} at "
                              f"{responded_at.isoformat()}")


def check_answer(place: str, chosen_options: list[str], user: Mapping[str, str], *, options: Sequence[str],
                 multiple: bool, assignees: Sequence[Mapping] | None, params_input: Any = None,
                 assignee: str | None = None) -> None:
    """Raise the ``ApprovalError`` subclass that says why this answer cannot be recorded.

    ``assignee``: the Airflow user id the responder acts as (the Slack path: the approver's configured
    Airflow user). It must be among the request's stored ``assignees``, and a request stored with
    nobody assigned cannot be answered that way (only in Airflow, where its own permissions apply).
    """
    allowed = list(options or [])
    invalid = sorted(set(chosen_options) - set(allowed))
    if not chosen_options or invalid:
        raise InvalidAnswer(f"invalid answer {chosen_options} for {place}; allowed options: {allowed}")
    if not multiple and len(chosen_options) > 1:
        raise InvalidAnswer(f"{place} takes a single option, got {chosen_options}")
    assigned = {u.get("id") for u in (assignees or [])}
    if assignee is not None:
        if not assigned:
            raise NotAnApprover(f"{place} was created with no assigned users (nobody was configured in "
                                "approvals.approvers), so it cannot be answered on behalf of a configured approver; "
                                "answer it in the Airflow UI")
        if assignee not in assigned:
            raise NotAnApprover(f"{user['name']} acts as Airflow user {assignee!r}, who is not assigned to answer "
                                f"{place} (assigned: {sorted(assigned)})")
    elif assigned and user["id"] not in assigned:
        raise NotAnApprover(f"{user['name']} (id {user['id']}) is not assigned to answer {place}")
    if params_input is not None and not isinstance(params_input, dict):
        raise InvalidAnswer(f"params_input must be a mapping, got {type(params_input).__name__}")


@dataclass(frozen=True)
class Decision:
    """How an approval request ended, read from the task's resume event."""

    decision: str  # Approve | Reject
    via: str  # slack | airflow | timeout
    user_id: str | None
    user_name: str | None
    at: datetime


def decision_from_event(event: Mapping[str, Any], defaults: Sequence[str] | None) -> Decision:
    """The decision in a HITL resume event (``chosen_options``, ``responded_by_user``, ``timedout``)."""
    timed_out = bool(event.get("timedout")) or event.get("error_type") == "timeout"
    chosen = event.get("chosen_options") or list(defaults or [REJECT])
    at = event.get("responded_at")
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    at = at if isinstance(at, datetime) else datetime.now(UTC)
    if timed_out:
        return Decision(chosen[0], "timeout", None, None, at)
    user = event.get("responded_by_user") or {}
    user_id = str(user.get("id") or "") or None
    name = user.get("name")
    if user_id and user_id.startswith(SLACK_RESPONDER_PREFIX):
        return Decision(chosen[0], "slack", user_id[len(SLACK_RESPONDER_PREFIX):], name, at)
    return Decision(chosen[0], "airflow", user_id, name, at)
