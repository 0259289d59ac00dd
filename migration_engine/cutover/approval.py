"""The approval tasks of phase 5, phase 6 and rollback scenario 3, built in one place.

Gates (``migration_engine.slack_approvals.gates``): ``pre_cutover``, ``write_cutover``,
``archive_old_tables``, ``drop_old_tables``, ``rollback_scenario_3``.

Built with ``slack_approvals.operator.approval_task``: Airflow's ApprovalOperator (answerable in the
UI's Required Actions page or the REST API) plus the Slack Block Kit request with Approve/Reject
buttons, the decision in the audit ledger, and the safe default Reject after
``approvals.response_timeout`` (which pages on-call). Reject skips everything downstream.
"""

from __future__ import annotations

from collections.abc import Sequence


def approval(task_id: str, subject: str, body: str, *, gate: str, figures_from: Sequence[str] = ()):
    """An approval task for ``gate``; the XCom of the ``figures_from`` tasks is shown with the request."""
    from migration_engine.slack_approvals.operator import approval_task

    return approval_task(task_id, subject, body, gate=gate, figures_from=list(figures_from))
