"""Unit tests of the engine's approvals package (no Airflow metadata DB, no Slack, no database):
approval points, the rules for an answer, the decision in a resume event, figures, signatures,
payloads and Block Kit; and the boundary: this package never imports Airflow."""

from __future__ import annotations

import ast
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migration_engine.approvals import answers, figures, messages, points, signing
from migration_engine.approvals.payload import (
    ACTION_APPROVE,
    ACTION_OPEN,
    ACTION_REJECT,
    ApprovalRef,
    PayloadError,
    parse_interaction,
)
from tests.slack_fixtures import APPROVER, block_actions, form_body, signed_headers

ROOT = Path(__file__).resolve().parents[2]
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
REF = ApprovalRef(dag_id="migration_phase5", run_id="manual__2026-01-01T00:00:00+00:00", task_id="approve_write",
                  map_index=-1, ti_id="0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee", approval_point="write_cutover")


# --- the boundary ----------------------------------------------------------------------------
ENGINE_FILES = [*sorted((ROOT / "migration_engine" / "approvals").glob("*.py")),
                ROOT / "migration_engine" / "alerts.py", ROOT / "migration_engine" / "slack_text.py",
                *sorted((ROOT / "migration_engine" / "dashboard").glob("*.py"))]


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_side_never_imports_airflow_nor_the_layer(path):
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.append(node.module)
    bad = [m for m in imported if m == "airflow" or m.startswith(("airflow.", "migration_engine.airflow"))]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}; move that part to migration_engine/airflow/"


# --- approval points -------------------------------------------------------------------------
def test_approval_points_are_a_closed_registry_plus_configured_names():
    assert points.check_approval_point("write_cutover") == "write_cutover"
    with pytest.raises(points.UnknownApprovalPoint, match="unknown approval point 'write_cutvoer'.*write_cutover"):
        points.check_approval_point("write_cutvoer")
    with pytest.raises(points.UnknownApprovalPoint):
        points.check_approval_point(None)
    assert set(points.APPROVAL_POINTS) <= set(points.known_approval_points())


# --- answers -----------------------------------------------------------------------------------
def test_answer_rules_name_the_problem():
    user = answers.responder_user("alice")
    assert user == {"id": "alice", "name": "alice"}
    assert answers.responder_user({"id": "slack:U1", "name": "Al"}) == {"id": "slack:U1", "name": "Al"}
    for bad in ("", "  ", None, {"name": "no id"}):
        with pytest.raises(answers.InvalidAnswer):
            answers.responder_user(bad)
    place = answers.where("d", "r", "t", -1)
    rules = dict(options=["Approve", "Reject"], multiple=False, assignees=[])
    answers.check_answer(place, ["Approve"], user, **rules)
    with pytest.raises(answers.InvalidAnswer, match=r"invalid answer \['Maybe'\] for d / r / t"):
        answers.check_answer(place, ["Maybe"], user, **rules)
    with pytest.raises(answers.InvalidAnswer, match="takes a single option"):
        answers.check_answer(place, ["Approve", "Reject"], user, **rules)
    with pytest.raises(answers.NotAnApprover, match="alice .id alice. is not assigned"):
        answers.check_answer(place, ["Approve"], user, **{**rules, "assignees": [{"id": "bob"}]})
    with pytest.raises(answers.InvalidAnswer, match="params_input must be a mapping"):
        answers.check_answer(place, ["Approve"], user, **rules, params_input=["x"])
    with pytest.raises(answers.AlreadyAnswered, match=r"already answered \['Reject'\] by bob"):
        answers.check_not_answered(place, responded_at=datetime(2026, 1, 1, tzinfo=UTC),
                                   responded_by={"name": "bob"}, chosen_options=["Reject"])


def test_decision_from_resume_events():
    at = datetime(2026, 1, 1, 2, 3, 4, tzinfo=UTC)
    slack = answers.decision_from_event({"chosen_options": ["Approve"], "responded_at": at.isoformat(),
                                         "responded_by_user": {"id": "slack:U1", "name": "al"}}, ["Reject"])
    assert (slack.decision, slack.via, slack.user_id, slack.user_name, slack.at) == ("Approve", "slack", "U1", "al", at)
    ui = answers.decision_from_event({"chosen_options": ["Reject"], "responded_by_user": {"id": "admin"}}, None)
    assert (ui.decision, ui.via, ui.user_id) == ("Reject", "airflow", "admin")
    timeout = answers.decision_from_event({"timedout": True}, ["Reject"])
    assert (timeout.decision, timeout.via, timeout.user_id) == ("Reject", "timeout", None)


def test_figures_without_sources_are_notes_not_errors():
    values, notes = figures.collect(None, figures={"a": 1}, figures_from=["up"], pull=None)
    assert values == {"a": 1} and notes == ["figures from up unavailable (LookupError)"]
    values, notes = figures.collect(None, figures_from=["x", "y"], pull={"x": {"a": 2}, "y": 7}.__getitem__,
                                    figures={"a": 1})
    assert values == {"a": 1, "x.a": 2, "y": 7} and notes == []


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




# --- the answer's assignee (the Slack path acts as the approver's Airflow user) -------------------
def test_an_assignee_must_be_among_the_stored_assigned_users():
    slack_user = {"id": "slack:UAPPROVER1", "name": "approver"}
    kwargs = {"options": ["Approve", "Reject"], "multiple": False}
    answers.check_answer("p", ["Approve"], slack_user, assignees=[{"id": "approver1"}], assignee="approver1", **kwargs)
    with pytest.raises(answers.NotAnApprover, match="acts as Airflow user 'intruder9'.*assigned: \\['approver1'\\]"):
        answers.check_answer("p", ["Approve"], slack_user, assignees=[{"id": "approver1"}], assignee="intruder9",
                             **kwargs)
    with pytest.raises(answers.NotAnApprover, match="created with no assigned users"):  # nobody stored: not from Slack
        answers.check_answer("p", ["Approve"], slack_user, assignees=[], assignee="approver1", **kwargs)
    with pytest.raises(answers.NotAnApprover, match="not assigned"):  # an Airflow login that is not listed
        answers.check_answer("p", ["Approve"], {"id": "mallory", "name": "m"}, assignees=[{"id": "approver1"}],
                             **kwargs)


# --- the endpoint's checks before the body is read ------------------------------------------------
def _headers(**change):
    body = b"payload=%7B%7D"
    headers = signed_headers(body, SECRET)
    headers["Content-Length"] = str(len(body))
    for key, value in change.items():
        key = key.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return headers


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"Content_Type": None}, 415, "unsupported_media_type"),
    ({"Content_Type": "application/json"}, 415, "unsupported_media_type"),
    ({"X_Slack_Signature": None}, 401, "missing_signature"),
    ({"X_Slack_Request_Timestamp": None}, 401, "missing_signature"),
    ({"X_Slack_Request_Timestamp": "12x"}, 401, "bad_timestamp"),
    ({"X_Slack_Request_Timestamp": "9" * 13}, 401, "bad_timestamp"),
    ({"X_Slack_Signature": "v0=" + "a" * 63}, 401, "malformed_signature"),
    ({"X_Slack_Signature": "v1=" + "a" * 64}, 401, "malformed_signature"),
    ({"X_Slack_Signature": "v0=" + "A" * 64}, 401, "malformed_signature"),
    ({"X_Slack_Request_Timestamp": str(int(time.time()) - 301)}, 401, "stale_request"),
    ({"Content_Length": "-1"}, 400, "bad_content_length"),
    ({"Content_Length": "1e9"}, 400, "bad_content_length"),
    ({"Content_Length": "1000001"}, 413, "body_too_large"),
    ({"Content_Length": str(300 * 2**20)}, 413, "body_too_large"),
])
def test_headers_are_checked_before_the_body(change, status, code):
    from migration_engine.approvals import guard

    refusal = guard.check_headers(_headers(**change))
    assert refusal is not None and (refusal.status, refusal.code) == (status, code), refusal
    assert refusal.counts_as_failure is (status != 415)


def test_well_formed_headers_pass_and_chunked_bodies_have_no_length():
    from migration_engine.approvals import guard

    assert guard.check_headers(_headers()) is None
    assert guard.check_headers(_headers(Content_Length=None)) is None  # chunked: the capped read decides
    assert guard.check_headers({k.lower(): v for k, v in _headers(Content_Type=guard.FORM_CONTENT_TYPE +
                                                                  "; charset=utf-8").items()}) is None


def test_the_body_is_read_with_a_cap_and_stops_when_it_is_passed():
    import asyncio

    from migration_engine.approvals import guard

    pulled = []

    async def chunks(n, size):
        for i in range(n):
            pulled.append(i)
            yield b"x" * size

    assert asyncio.run(guard.read_capped(chunks(4, 250), cap=1000)) == b"x" * 1000
    with pytest.raises(guard.BodyTooLarge):
        asyncio.run(guard.read_capped(chunks(10_000, 64 * 1024), cap=1_000_000))
    assert len(pulled) == 4 + 16  # stopped at the first chunk over the cap, not after 10 000


def test_failed_signatures_are_limited_per_source_in_a_window():
    from migration_engine.approvals import guard

    limiter = guard.FailureLimiter(limit=3, window=60, max_sources=2)
    for t in (0, 1, 2):
        assert limiter.refusal("10.0.0.1", now=t) is None
        limiter.failed("10.0.0.1", now=t)
    refusal = limiter.refusal("10.0.0.1", now=3)
    assert (refusal.status, refusal.code) == (429, "rate_limited") and "try again in 57 s" in refusal.message
    assert limiter.refusal("10.0.0.2", now=3) is None  # another source is not affected
    assert limiter.refusal("10.0.0.1", now=60.5) is None  # the first failure left the window
    limiter.failed("10.0.0.2", now=61)
    limiter.failed("10.0.0.3", now=62)  # over max_sources: the least recently failing source is forgotten
    assert set(limiter._failures) == {"10.0.0.2", "10.0.0.3"}
    with pytest.raises(ValueError):
        guard.FailureLimiter(limit=0)
