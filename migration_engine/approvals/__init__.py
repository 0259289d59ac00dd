"""Human approvals: what an approval point is, the Slack request, the signed click, the decision.

Terminology: an *approval point* is where a human must decide (Approve / Reject); a *gate* is a
machine check (``migration_engine.gates``, ``gate_results``). This package is the engine side and
never imports Airflow; the Airflow side - the HITL task DAGs call (``approval(...)``), its Block Kit
notifier, recording an answer in Airflow's metadata DB, the HTTP endpoint - is
``migration_engine.airflow.approvals`` / ``.notifiers`` / ``.slack_endpoint``.

* ``points``        the approval points and who may answer them (config ``approvals.approvers``).
* ``answers``       an answer and its rules (one answer, valid options, assigned users), the errors,
                    and the decision read from a resume event.
* ``figures``       the numbers shown with a request (passed in, upstream results, latest gate results).
* ``messages``      Block Kit for the request, the decision and the timeout.
* ``request``       post a request to Slack and record it.
* ``payload``       the interactivity payload (form field ``payload``) and our button values.
* ``signing``       Slack request signatures (v0 HMAC-SHA256, 5-minute window) and the signing secret.
* ``store``         control-schema tables: seen requests (replay protection) and approval messages.
* ``slackio``       the Slack Web API calls (bounded retries, never raising).
* ``outcome``       ledger entries, message update and timeout page for a decision.
* ``interactivity`` ``handle_interaction(body, headers, airflow=...)``: what ``POST /slack/interactivity``
                    does.

Operator guide: docs/oncall-slack.md.
"""

from migration_engine.approvals.points import APPROVAL_POINTS, approvers_for, check_approval_point

__all__ = ["APPROVAL_POINTS", "approvers_for", "check_approval_point"]
