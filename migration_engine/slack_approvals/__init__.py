"""Human approvals answered from Slack: the request message, the signed click, the recorded decision.

Pieces (each importable without Airflow, except where noted):

* ``gates``         the approval gates and who may answer them (config ``approvals.approvers``).
* ``signing``       Slack request signatures (v0 HMAC-SHA256, 5-minute window) and the signing secret.
* ``payload``       the interactivity payload (form field ``payload``) and our button values.
* ``messages``      Block Kit for the request, the decision and the timeout.
* ``store``         control-schema tables: seen requests (replay protection) and approval messages.
* ``slackio``       the Slack Web API calls (bounded retries, never raising).
* ``outcome``       ledger entry and message update for a decision (shared by endpoint and operator).
* ``notifier``      ``SlackApprovalNotifier``: posts the request when the HITL task starts waiting.
* ``operator``      ``MigrationApprovalOperator`` / ``approval_task(...)``: the one way phase DAGs
                    ask a human (timeout -> critical page + safe default Reject).
* ``interactivity`` ``handle_interaction(body, headers)``: what the plugin endpoint
                    (``migration_engine/airflow/slack_endpoint.py``, ``POST /slack/interactivity``) does.

Operator guide: docs/oncall-slack.md.
"""

from migration_engine.slack_approvals.gates import APPROVAL_GATES, approvers_for, check_gate

__all__ = ["APPROVAL_GATES", "approvers_for", "check_gate"]
