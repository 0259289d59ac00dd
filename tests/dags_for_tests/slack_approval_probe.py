"""Probe DAGs for tests/test_slack_approvals_e2e.py: a gate's figures -> a Slack approval (approval point
``write_cutover``) -> the step.

``slack_approval_probe`` waits (10 min) for an answer from Slack; ``slack_approval_timeout_probe``
times out after a few seconds (the scheduler applies the safe default). Loaded as an extra DAG
bundle by the tests; paused at creation, so a real scheduler started by a test only runs its
``awaiting_input`` timeout sweep and never schedules these runs itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from migration_engine.airflow.approvals import approval


def _probe(dag_id: str, response_timeout: timedelta) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, start_date=datetime(2025, 1, 1), catchup=False,
             is_paused_upon_creation=True, default_args={"retries": 0}, tags=["test"]) as dag:

        @task
        def evaluate_gate() -> dict:
            from migration_engine.gates import GateResult

            return GateResult("cutover_readiness", "passed", "every pre-cutover check is green",
                              {"dual_write_success_pct": 99.7, "shadow_mismatch_pct": 0.02,
                               "backup_age": "3h"}).as_dict()

        approve = approval(
            "approve_write_cutover",
            subject="Switch writes for {{ dag.dag_id }} to the new tables?",
            body="The new tables become the write path. Reject (or no answer) changes nothing.",
            approval_point="write_cutover",
            figures={"rollout_pct": 100},
            figures_from=["evaluate_gate"],
            response_timeout=response_timeout,
        )

        @task
        def cut_over() -> str:
            return "writes switched"

        evaluate_gate() >> approve >> cut_over()
    return dag


slack_approval_probe = _probe("slack_approval_probe", timedelta(minutes=10))
slack_approval_timeout_probe = _probe("slack_approval_timeout_probe", timedelta(seconds=3))
