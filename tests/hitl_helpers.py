"""Run a DAG that waits for a human approval, answering it from another thread, time-bounded.

Under ``dag.test()`` a HITL task parks in ``awaiting_input`` and the loop waits forever. Here
``dag.test()`` runs in the calling (main) thread - the in-process task runner touches signal
handlers, which only the main thread may - while a responder thread polls Airflow's metadata DB
for the pending request and answers it with ``migration_engine.airflow.approvals.respond``, exactly as the
Slack endpoint will. If the request never appears within ``timeout`` the responder fails the
waiting task instances, so ``dag.test()`` returns and the test fails with a clear message instead
of hanging.

    result = run_dag_answering("migration_phase1_rollback", Answer("approve_rollback", "Approve"))
    assert result.state == "success", result.tasks
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.airflow_helpers import get_dag


@dataclass
class Answer:
    task_id: str
    options: list[str] | str
    responder: str | dict = "test-approver"
    params_input: dict[str, Any] | None = None
    delay: float = 0.0  # seconds to wait after the request appears (lets a test act "while waiting")


@dataclass
class HitlRun:
    state: str
    tasks: dict[str, str]
    answered: list[Any] = field(default_factory=list)   # RecordedAnswer per answer given
    unanswered: list[Answer] = field(default_factory=list)  # the DAG never asked these
    dag_run: Any = None


class ApprovalNeverRequested(AssertionError):
    """The DAG did not ask for the expected approval within the timeout."""


class UnexpectedApproval(AssertionError):
    """The DAG asked for an approval the test did not provide an answer for."""


def _fail_waiting(dag_id: str) -> list[str]:
    """Fail task instances of ``dag_id`` parked for input, so a dag.test() loop can end."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    failed = []
    with create_session(scoped=False) as session:
        for ti in session.scalars(select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.state.in_([TaskInstanceState.AWAITING_INPUT, TaskInstanceState.DEFERRED]))):
            ti.state = TaskInstanceState.FAILED
            failed.append(f"{ti.run_id}/{ti.task_id}")
    return failed


def run_dag_answering(dag_id: str, answers: Answer | Sequence[Answer], *, conf: dict | None = None,
                      timeout: float = 120.0, poll: float = 0.2) -> HitlRun:
    """``dag.test()`` the DAG; answer each ``Answer`` when its task asks; bounded by ``timeout``."""
    from migration_engine.airflow import approvals

    todo = [answers] if isinstance(answers, Answer) else list(answers)
    dag = get_dag(dag_id)
    stale = {(p.run_id, p.task_id, p.map_index) for p in approvals.pending_approvals(dag_id)}
    answered: list[Any] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def abort(reason: BaseException) -> None:
        """Record why, then keep failing this DAG's parked tasks until dag.test() returns: a request
        that appears after the deadline must not park the run forever either."""
        errors.append(reason)
        while not stop.is_set():
            try:
                _fail_waiting(dag_id)
            except Exception:  # noqa: BLE001 - SQLite busy: try again on the next poll
                pass
            stop.wait(poll)

    def responder() -> None:
        # Runs until dag.test() returns, so every request of the run is either answered or failed.
        deadline = time.monotonic() + timeout
        seen_at: dict[tuple, float] = {}
        try:
            while not stop.is_set():
                for p in approvals.pending_approvals(dag_id):
                    key = (p.run_id, p.task_id, p.map_index)
                    if key in stale:
                        continue
                    match = next((a for a in todo if a.task_id == p.task_id), None)
                    if match is None:
                        abort(UnexpectedApproval(f"{dag_id}: {p.task_id} asked {p.subject!r} but the test has no "
                                                 f"answer for it (answers left: {[a.task_id for a in todo]})"))
                        return
                    first_seen = seen_at.setdefault(key, time.monotonic())
                    if time.monotonic() - first_seen < match.delay:
                        continue
                    answered.append(approvals.respond(dag_id, p.run_id, p.task_id, match.options, match.responder,
                                                      match.params_input, p.map_index))
                    todo.remove(match)
                if todo and time.monotonic() > deadline:
                    abort(ApprovalNeverRequested(
                        f"{dag_id}: no answerable approval for {[a.task_id for a in todo]} within {timeout}s; "
                        f"failed the run's waiting task instances to stop dag.test()"))
                    return
                stop.wait(poll)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            abort(exc)

    thread = threading.Thread(target=responder, name=f"hitl-responder-{dag_id}", daemon=True)
    thread.start()
    try:
        dr = dag.test(run_conf=conf or None)
    finally:
        stop.set()
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    tasks = {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state
             for ti in dr.get_task_instances()}
    return HitlRun(state=dr.state, tasks=tasks, answered=answered, unanswered=list(todo), dag_run=dr)
