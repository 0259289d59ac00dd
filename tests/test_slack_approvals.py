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


CHANNEL, TS = "CFAKE0001", "1700000000.000100"


def _store_request(dsn: str, ref: ApprovalRef = REF, *, channel: str = CHANNEL, ts: str = TS, expires_at=None):
    """The row the notifier stores when it posts a request (what a click is checked against)."""
    import psycopg2

    from migration_engine.approvals import store

    conn = psycopg2.connect(dsn)
    try:
        store.save_request(conn, "migration_control", ref, subject="Switch writes?", channel=channel,
                           message_ts=ts, blocks=[], delivery_error=None, expires_at=expires_at)
    finally:
        conn.close()


def test_handler_refusals_are_clear_and_change_nothing(handler_env, fake_slack, caplog):
    caplog.set_level(logging.DEBUG)
    dsn = handler_env
    url = fake_slack.url + "respond/T/1/abc"
    _store_request(dsn)

    def click(user_id=APPROVER, ref=REF, **kw):
        kw.setdefault("channel_id", CHANNEL)
        kw.setdefault("message_ts", TS)
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
    body, headers = click(ref=unknown_point, message_ts="9.9")
    reply = _call(body, headers)
    assert (reply.status, reply.body["error"]) == (200, "unknown_approval_point")
    assert "unknown approval point 'drop_everything'" in reply.body["message"]
    assert (replay := _call(body, headers)).status == 409 and replay.body["error"] == "replayed"

    body, headers = click(user_id=INTRUDER)
    reply = _call(body, headers)
    assert (reply.status, reply.body["error"]) == (200, "not_authorised")
    body, headers = click()  # an approver, on the stored request, but there is no such task instance in Airflow
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
    assert query(dsn, "SELECT decision FROM migration_control.slack_approvals") == [(None,)]
    assert SECRET not in caplog.text


@pytest.mark.parametrize(("change", "field"), [
    ({"approval_point": "phase1_rollback"}, "approval_point"),  # issue 14: INTRUDER may answer phase1_rollback
    ({"dag_id": "migration_phase6_cleanup"}, "dag_id"),
    ({"run_id": "manual__1999-01-01T00:00:00+00:00"}, "run_id"),
    ({"task_id": "approve_drop"}, "task_id"),
    ({"map_index": 3}, "map_index"),
    ({"ti_id": "0190aaaa-bbbb-7ccc-8ddd-000000000000"}, "ti_id"),
])
def test_a_value_that_disagrees_with_the_stored_request_is_refused(handler_env, fake_slack, change, field):
    """The button value names the approval point and the task; the stored request of the clicked message
    decides. Whatever field is changed, the click is refused before anyone's rights are even looked at."""
    dsn = handler_env
    _store_request(dsn)
    forged = ApprovalRef(**{**REF.__dict__, **change})
    body = form_body(block_actions(user_id=INTRUDER, value=forged.to_value(), channel_id=CHANNEL, message_ts=TS))
    reply = _call(body, signed_headers(body, SECRET))
    assert (reply.status, reply.body["error"]) == (200, "request_mismatch"), reply.body
    assert f"{field} {change[field]!r} != stored {getattr(REF, field)!r}" in reply.body["message"]
    assert query(dsn, "SELECT outcome, user_id, approval_key FROM migration_control.slack_requests") == [
        ("request_mismatch", INTRUDER, forged.key)]
    assert query(dsn, "SELECT decision FROM migration_control.slack_approvals") == [(None,)]
    assert query(dsn, "SELECT count(*) FROM migration_control.audit_ledger")[0][0] == 0


def test_no_stored_request_outdated_message_and_deadline_are_refused(handler_env, fake_slack):
    from datetime import UTC, datetime, timedelta

    dsn = handler_env

    def click(ref=REF, ts=TS):
        body = form_body(block_actions(user_id=APPROVER, value=ref.to_value(), channel_id=CHANNEL, message_ts=ts))
        return _call(body, signed_headers(body, SECRET)).body["error"]

    assert click() == "no_stored_request"  # nothing stored at all (the notifier could not record it)
    _store_request(dsn, ts="1700000001.000200")  # a newer message for the same request
    assert click() == "outdated_message"
    other_try = ApprovalRef(**{**REF.__dict__, "ti_id": "0190aaaa-bbbb-7ccc-8ddd-111111111111"})
    _store_request(dsn, other_try, expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert click() == "request_mismatch"  # the message is now a later try's
    _store_request(dsn, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert click() == "timed_out"  # past the deadline, before the scheduler's sweep took the default
    assert [o for (o,) in query(dsn, "SELECT outcome FROM migration_control.slack_requests ORDER BY received_at")] \
        == ["no_stored_request", "outdated_message", "request_mismatch", "timed_out"]


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
        load_config(write_config(tmp_path / "a.yaml",
                                 approvers={"default": [{"slack": "alice@example.com", "airflow": "alice"}]}))
    cfg = load_config(write_config(tmp_path / "b.yaml", approvers={
        "default": [], "write_cutvoer": [{"slack": APPROVER, "airflow": "alice"}]}))
    with pytest.raises(ConfigError, match="unknown approval point.*write_cutvoer"):
        check_config_approval_points(cfg)


def test_config_one_approver_model_and_the_old_form(tmp_path):
    from migration_engine.approvals.points import approvers_for, assigned_users, person_for_slack
    from migration_engine.config import ConfigError, load_config

    with pytest.raises(ConfigError) as old:  # the form before issue 14: Slack ids only
        load_config(write_config(tmp_path / "old.yaml", approvers={"write_cutover": [APPROVER, "U0TWO"]}))
    text = str(old.value)
    assert "approvals.approvers.write_cutover[0] is 'UAPPROVER1': the old form" in text
    assert "{slack: UAPPROVER1, airflow: <their Airflow user id>}" in text and "2 entries to change" in text
    with pytest.raises(ConfigError, match="airflow"):  # a person without an Airflow user
        load_config(write_config(tmp_path / "half.yaml", approvers={"write_cutover": [{"slack": APPROVER}]}))
    with pytest.raises(ConfigError, match=r"slack id\(s\) \['UAPPROVER1'\] listed twice"):
        load_config(write_config(tmp_path / "dup.yaml", approvers={"write_cutover": [
            {"slack": APPROVER, "airflow": "a"}, {"slack": APPROVER, "airflow": "b"}]}))
    with pytest.raises(ConfigError, match="unknown_key"):
        load_config(write_config(tmp_path / "extra.yaml", approvers={"write_cutover": [
            {"slack": APPROVER, "airflow": "a", "unknown_key": 1}]}))

    cfg = load_config(write_config(tmp_path / "ok.yaml"))
    assert approvers_for(cfg, "write_cutover") == [APPROVER]
    assert assigned_users(cfg, "write_cutover") == [{"id": "approver1", "name": "Approver One"}]
    assert assigned_users(cfg, "phase1_rollback") == [{"id": "intruder9", "name": "intruder9"}]
    assert assigned_users(cfg, "drop_old_tables") is None  # default: nobody -> Airflow's own permissions
    assert person_for_slack(cfg, "write_cutover", INTRUDER) is None
    assert person_for_slack(cfg, "phase1_rollback", INTRUDER).airflow == "intruder9"


def test_approval_task_assigns_the_configured_airflow_users(handler_env):
    """HITL assigned_users come from approvals.approvers, so the Airflow UI/REST enforce the same people."""
    from migration_engine.airflow.approvals import approval

    task = approval("approve_write", "Switch writes?", approval_point="write_cutover")
    assert task.assigned_users == [{"id": "approver1", "name": "Approver One"}]
    assert approval("approve_drop", "Drop?", approval_point="drop_old_tables").assigned_users is None
    with pytest.raises(ValueError, match="assigned_users come from approvals.approvers"):
        approval("x", "s", approval_point="write_cutover", assigned_users=[{"id": "mallory", "name": "m"}])


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
