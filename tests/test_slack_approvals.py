"""Slack approvals without an API server: signatures, payloads, Block Kit, and the endpoint's
handler against the real control database, the real Airflow metadata DB and a fake Slack."""

from __future__ import annotations

import itertools
import json
import logging
import time

import pytest

from migration_engine.approvals import messages, signing
from migration_engine.approvals.payload import (
    ACTION_APPROVE,
    ACTION_OPEN,
    ACTION_REJECT,
    ApprovalRef,
    PayloadError,
    parse_interaction,
)
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


# --- signatures ----------------------------------------------------------------------------
def test_signature_accepts_slack_signed_request_and_names_each_refusal():
    body = form_body(block_actions(user_id=APPROVER, value=REF.to_value()))
    now = time.time()
    ok = signing.verify_request(body, signed_headers(body, SECRET, timestamp=int(now)), SECRET, now=now)
    assert ok.timestamp == int(now) and ok.signature.startswith("v0=")

    def refused(headers, body=body):
        with pytest.raises(signing.RequestRejected) as info:
            signing.verify_request(body, headers, SECRET, now=now)
        assert info.value.status == 401 and SECRET not in info.value.message
        return info.value.code, info.value.message

    code, msg = refused(signed_headers(body, "not-the-secret", timestamp=int(now)))
    assert code == "bad_signature" and "does not match" in msg
    code, _ = refused(signed_headers(body, SECRET, timestamp=int(now)), body=body + b"x")  # body changed
    assert code == "bad_signature"
    code, msg = refused(signed_headers(body, SECRET, timestamp=int(now) - 301))
    assert code == "stale_request" and "301 s old" in msg
    code, msg = refused(signed_headers(body, SECRET, timestamp=int(now) + 400))
    assert code == "stale_request" and "in the future" in msg
    assert refused({})[0] == "missing_signature"
    assert refused({"X-Slack-Request-Timestamp": "yesterday", "X-Slack-Signature": "v0=x"})[0] == "bad_timestamp"
    # headers are case-insensitive, as HTTP servers hand them over in any case
    lower = {k.lower(): v for k, v in signed_headers(body, SECRET, timestamp=int(now)).items()}
    assert signing.verify_request(body, lower, SECRET, now=now).timestamp == int(now)


def test_signing_secret_from_connection_extra_else_env(monkeypatch):
    monkeypatch.delenv(signing.SIGNING_SECRET_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_SIGNED", json.dumps(
        {"conn_type": "slack", "password": "xoxb-1", "extra": {"signing_secret": "from-connection-123"}}))
    assert signing.signing_secret("slack_signed") == "from-connection-123"
    monkeypatch.setenv(signing.SIGNING_SECRET_ENV, "from-env-456")
    assert signing.signing_secret("slack_signed") == "from-connection-123"  # the connection wins
    assert signing.signing_secret("no_such_conn") == "from-env-456"
    monkeypatch.delenv(signing.SIGNING_SECRET_ENV)
    with pytest.raises(signing.SigningSecretMissing, match="signing_secret.*SLACK_SIGNING_SECRET"):
        signing.signing_secret("no_such_conn")


# --- payloads ------------------------------------------------------------------------------
def test_payload_parsing_round_trips_our_button_values():
    body = form_body(block_actions(user_id=APPROVER, value=REF.to_value(), action_id=ACTION_REJECT,
                                   response_url="https://hooks.slack.com/actions/T/1/x", user_name="alice"))
    it = parse_interaction(body)
    assert it.ref == REF and it.decision == "Reject" and it.user_id == APPROVER and it.user_name == "alice"
    assert it.channel_id == "CFAKE0001" and it.message_ts == "1.000001"
    assert it.response_url == "https://hooks.slack.com/actions/T/1/x"
    assert parse_interaction(form_body(block_actions(user_id="U1", value="", action_id=ACTION_OPEN))).ref is None
    # buttons posted before the gate -> approval point rename carry the point under "g": still answerable
    legacy = json.dumps({"v": 1, "g": REF.approval_point, "d": REF.dag_id, "r": REF.run_id, "t": REF.task_id,
                         "m": REF.map_index, "i": REF.ti_id})
    assert ApprovalRef.from_value(legacy) == REF


@pytest.mark.parametrize("body, message", [
    (b"", "missing form field 'payload'"),
    (b"text=hello", "missing form field 'payload'"),
    (form_body("{not json"), "not valid JSON"),
    (form_body("[1, 2]"), "must be a JSON object, got list"),
    (form_body({"type": "view_submission"}), "unsupported interaction type 'view_submission'"),
    (form_body({**block_actions(user_id="U1", value=REF.to_value()), "user": {}}), "no user.id"),
    (form_body(block_actions(user_id="U1", value=REF.to_value(), action_id="other_app_button")),
     "unknown action 'other_app_button'"),
    (form_body(block_actions(user_id="U1", value="approve-please")), "button value is not JSON"),
    (form_body(block_actions(user_id="U1", value=json.dumps({"v": 1, "g": "write_cutover"}))), "lacks"),
])
def test_malformed_payloads_are_named(body, message):
    with pytest.raises(PayloadError, match=message):
        parse_interaction(body)


# --- Block Kit -----------------------------------------------------------------------------
def test_request_message_has_subject_figures_buttons_approvers_and_link():
    from datetime import UTC, datetime

    link = "http://airflow.test:8080/dags/d/runs/r/tasks/t/required_actions?map_index=-1"
    text, blocks = messages.request_message(
        ref=REF, subject="Switch writes <!channel>?", body="Reject changes nothing.",
        figures={"dual_write_success_pct": 99.7, "rows": 12000}, approvers=[APPROVER, "U0SECOND"], link=link,
        expires_at=datetime(2026, 1, 1, 4, 0, tzinfo=UTC), figures_note="cutover_readiness: passed")
    rendered = json.dumps(blocks)
    assert blocks[0]["text"]["text"] == ":raised_hand: Approval needed: Switch writes <!channel>?"  # plain_text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text  # mrkdwn: escaped, cannot ping
    assert "*dual_write_success_pct*\\n99.7" in rendered and "*rows*\\n12,000" in rendered
    assert f"<@{APPROVER}> <@U0SECOND>" in rendered
    assert "No answer by 2026-01-01 04:00:00 UTC: *Reject* (safe default)" in rendered
    (actions,) = [b for b in blocks if b["type"] == "actions"]
    approve, reject, open_link = actions["elements"]
    assert (approve["action_id"], approve["style"], reject["action_id"], reject["style"]) == \
        (ACTION_APPROVE, "primary", ACTION_REJECT, "danger")
    assert ApprovalRef.from_value(approve["value"]) == REF == ApprovalRef.from_value(reject["value"])
    assert approve["confirm"]["confirm"]["text"] == "Approve"
    assert open_link["url"] == link and open_link["action_id"] == ACTION_OPEN

    _, none_blocks = messages.request_message(ref=REF, subject="s", body=None, figures=None, approvers=[],
                                              link=None, expires_at=None)
    assert "no Slack approvers are configured" in json.dumps(none_blocks)

    from datetime import datetime as dt

    line = messages.outcome_line("Approve", via="slack", at=dt(2026, 1, 1, 1, 2, 3, tzinfo=UTC), user_id=APPROVER,
                                 user_name="alice")
    decided_text, decided = messages.decided_message(blocks, "Switch writes?", line)
    assert not [b for b in decided if b["type"] == "actions"]  # no buttons left to click
    assert f"Approved* by <@{APPROVER}> (alice) in Slack at 2026-01-01 01:02:03 UTC" in json.dumps(decided)
    assert f"<{link}|Open in Airflow>" in json.dumps(decided)
    assert decided[0]["text"]["text"].startswith("Approval: Switch writes")
    assert "Approved" in decided_text


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
