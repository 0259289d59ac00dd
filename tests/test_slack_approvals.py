"""Slack approvals without an API server: the endpoint's handler (engine + the layer's Airflow side)
against the real control database, the real Airflow metadata DB and a fake Slack; the notifier.
Signatures, payloads and Block Kit on their own: tests/unit/test_approvals.py."""

from __future__ import annotations

import itertools
import logging
import time

import pytest

from migration_engine.approvals import signing
from migration_engine.approvals.payload import ApprovalRef
from tests.slack_fixtures import (
    APPROVER,
    INTRUDER,
    block_actions,
    control_database,
    form_body,
    query,
    signed_headers,
    write_config,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
REF = ApprovalRef(dag_id="migration_phase5", run_id="manual__2026-01-01T00:00:00+00:00", task_id="approve_write",
                  map_index=-1, ti_id="0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee", approval_point="write_cutover")


# --- the handler (no HTTP): refusals change nothing ----------------------------------------
_n = itertools.count()


@pytest.fixture
def handler_env(pg_cluster, airflow_db, fake_slack, tmp_path, monkeypatch):
    dsn = control_database(pg_cluster, f"slack_unit_{next(_n)}")
    monkeypatch.setenv("MIGRATION_CONFIG", str(write_config(tmp_path / "migration.yaml")))
    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", dsn)
    monkeypatch.setenv(signing.SIGNING_SECRET_ENV, SECRET)
    return dsn


def _call(body: bytes, headers: dict):
    from migration_engine.airflow.slack_endpoint import handle_interaction

    reply = handle_interaction(body, headers)
    reply.run_followups()
    return reply


def test_handler_refusals_are_clear_and_change_nothing(handler_env, fake_slack, caplog):
    caplog.set_level(logging.DEBUG)
    dsn = handler_env
    url = fake_slack.url + "respond/T/1/abc"

    def click(user_id=APPROVER, ref=REF, **kw):
        body = form_body(block_actions(user_id=user_id, value=ref.to_value(), response_url=url, **kw))
        return body, signed_headers(body, SECRET)

    body, headers = click()
    assert _call(body, {**headers, "X-Slack-Signature": "v0=" + "0" * 64}).status == 401
    stale = signed_headers(body, SECRET, timestamp=int(time.time()) - 600)
    reply = _call(body, stale)
    assert (reply.status, reply.body["error"]) == (401, "stale_request")

    bad = form_body("{oops")
    reply = _call(bad, signed_headers(bad, SECRET))
    assert (reply.status, reply.body["error"]) == (400, "malformed_payload")
    assert "not valid JSON" in reply.body["message"]

    unknown_point = ApprovalRef(**{**REF.__dict__, "approval_point": "drop_everything"})
    body, headers = click(ref=unknown_point)
    reply = _call(body, headers)
    assert (reply.status, reply.body["error"]) == (200, "unknown_approval_point")
    assert "unknown approval point 'drop_everything'" in reply.body["message"]
    assert (replay := _call(body, headers)).status == 409 and replay.body["error"] == "replayed"

    body, headers = click(user_id=INTRUDER)
    reply = _call(body, headers)
    assert (reply.status, reply.body["error"]) == (200, "not_authorised")
    body, headers = click()  # an approver, but there is no such task instance in Airflow
    reply = _call(body, headers)
    assert (reply.status, reply.body["error"]) == (200, "unknown_approval")

    answers = [m["text"] for m in fake_slack.messages("respond/T/1/abc")]
    assert len(answers) == 3 and all(m.get("response_type") == "ephemeral" and m.get("replace_original") is False
                                     for m in fake_slack.messages("respond/T/1/abc"))
    assert "unknown approval point 'drop_everything'" in answers[0]
    assert f"<@{INTRUDER}>, you are not an approver of the *write_cutover* approval point" in answers[1]
    assert f"Approvers: <@{APPROVER}>" in answers[1]
    assert "no approval migration_phase5/" in answers[2]
    assert not fake_slack.messages("chat.update") and not fake_slack.messages()  # no message touched

    outcomes = query(dsn, "SELECT outcome, user_id FROM migration_control.slack_requests ORDER BY received_at")
    assert outcomes == [("malformed_payload", None), ("unknown_approval_point", APPROVER), ("not_authorised", INTRUDER),
                        ("unknown_approval", APPROVER)]
    assert query(dsn, "SELECT count(*) FROM migration_control.audit_ledger")[0][0] == 0
    assert SECRET not in caplog.text


def test_handler_without_signing_secret_refuses_everything(handler_env, monkeypatch):
    monkeypatch.delenv(signing.SIGNING_SECRET_ENV)
    body = form_body(block_actions(user_id=APPROVER, value=REF.to_value()))
    reply = _call(body, signed_headers(body, SECRET))
    assert (reply.status, reply.body["error"]) == (503, "not_configured")
    assert "SLACK_SIGNING_SECRET" in reply.body["message"]


def test_config_refuses_non_slack_ids_and_unknown_approval_points(tmp_path):
    from migration_engine.approvals.points import check_config_approval_points
    from migration_engine.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="approvers must be Slack user ids.*alice@example.com"):
        load_config(write_config(tmp_path / "a.yaml", approvers={"default": ["alice@example.com"]}))
    cfg = load_config(write_config(tmp_path / "b.yaml", approvers={"default": [], "write_cutvoer": [APPROVER]}))
    with pytest.raises(ConfigError, match="unknown approval point.*write_cutvoer"):
        check_config_approval_points(cfg)


# --- the notifier's figures and its refusal to fail the task -------------------------------
def test_request_figures_from_args_xcom_and_gate_results(handler_env):
    import psycopg2

    from migration_engine import control
    from migration_engine.approvals import figures as request_figures
    from migration_engine.config import load_config

    conn = psycopg2.connect(handler_env)
    control.record_gate_result(conn, "migration_control", gate="shadow_reads", status="warning",
                               figures={"mismatch_pct": 0.08}, reason="close to the limit")
    control.record_gate_result(conn, "migration_control", gate="shadow_reads", status="passed",
                               figures={"mismatch_pct": 0.01}, reason="below 0.1%")
    conn.close()
    xcoms = {"check_backup": {"gate": "backup_age", "status": "passed", "reason": "fresh",
                              "figures": {"backup_age": "2h", "mismatch_pct": 9.9}},
             "count_rows": 12000}
    figures, notes = request_figures.collect(load_config(), figures={"rollout_pct": 100},
                                             figures_from=["check_backup", "count_rows"], pull=xcoms.__getitem__,
                                             gate_results=["shadow_reads", "never_run"])
    assert figures == {"rollout_pct": 100, "backup_age": "2h", "mismatch_pct": 9.9, "count_rows": 12000,
                       "shadow_reads.mismatch_pct": 0.01}  # the latest evaluation; clashes get a prefix
    assert notes == ["backup_age: passed - fresh", "shadow_reads: passed - below 0.1%", "never_run: never evaluated"]


def test_notifier_never_raises(fake_slack):
    from migration_engine.airflow.notifiers import SlackApprovalNotifier

    notifier = SlackApprovalNotifier(approval_point="write_cutover")
    assert notifier.notify({}) is None  # no task instance at all: logged, not raised
    assert not fake_slack.calls
