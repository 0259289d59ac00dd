"""Acceptance: Slack approvals end to end, with the endpoint inside a real Airflow API server.

One API server (subprocess, plugins/slack_interactivity.py mounted at /slack) shares this session's
Airflow metadata DB with the ``dag.test()`` runs here; a fake Slack Web API on 127.0.0.1 records
every call; a fresh PostgreSQL database holds the control schema. The probe DAG
(tests/dags_for_tests/slack_approval_probe.py) is: gate figures -> ``approval(...)`` (approval point
``write_cutover``) -> the step.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import replace
from types import SimpleNamespace

import pytest

from devtools.slack_sink import FakeSlack
from migration_engine.airflow import approvals
from migration_engine.approvals.payload import ACTION_REJECT, ApprovalRef
from tests.hitl_helpers import _fail_waiting
from tests.slack_fixtures import (
    APPROVAL_CHANNEL,
    APPROVER,
    APPROVER_AIRFLOW,
    CRIT_CHANNEL,
    INTRUDER,
    INTRUDER_AIRFLOW,
    ONCALL,
    TEST_APPROVERS,
    TEST_DAGS,
    AirflowProcess,
    ApiServer,
    block_actions,
    bundle_config_env,
    control_database,
    form_body,
    in_thread,
    post,
    query,
    signed_headers,
    write_config,
)

SECRET = "e2e-signing-secret-5f0c8a7d9b"
PROBE, TIMEOUT_PROBE = "slack_approval_probe", "slack_approval_timeout_probe"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]  # a real api-server (and scheduler)


@pytest.fixture(scope="module")
def stack(pg_cluster, airflow_db, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slack_e2e")
    dsn = control_database(pg_cluster, "slack_e2e")
    fake = FakeSlack().start()
    mp = pytest.MonkeyPatch()
    env = {
        "MIGRATION_CONFIG": str(write_config(tmp / "migration.yaml")),
        "AIRFLOW_CONN_BREEDERHQ_DB": dsn,
        "AIRFLOW_CONN_MARKETPLACE_DB": dsn,
        # bot token and signing secret both come from the Slack connection, as in production
        "AIRFLOW_CONN_SLACK_API_DEFAULT": json.dumps({"conn_type": "slack", "password": fake.token,
                                                     "extra": {"base_url": fake.url, "signing_secret": SECRET}}),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundle_config_env(),
    }
    for key, value in env.items():
        mp.setenv(key, value)
    mp.delenv("SLACK_SIGNING_SECRET", raising=False)
    server = ApiServer(dict(os.environ), tmp / "api-server.log",
                       users={"admin": "admin", APPROVER_AIRFLOW: "user", INTRUDER_AIRFLOW: "user"}).start()
    try:
        server.wait_ready()
        status, health = server.call("GET", "/slack/health", token=server.token("admin"))
        assert status == 200 and health["signing_secret_configured"], health
        yield SimpleNamespace(dsn=dsn, fake=fake, server=server, url=server.url + "/slack/interactivity",
                              env=dict(os.environ), tmp=tmp, config=tmp / "migration.yaml")
    finally:
        server.stop()
        fake.stop()
        mp.undo()


@pytest.fixture
def slack(stack):
    stack.fake.reset()
    return stack.fake


# --- helpers -------------------------------------------------------------------------------
def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(TEST_DAGS / "slack_approval_probe.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def _pending(dag_id: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = approvals.pending_approvals(dag_id)
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"{dag_id}: no pending approval within {timeout}s")


def _approval_message(fake: FakeSlack, timeout: float = 90) -> tuple[dict, str]:
    """The posted approval request and its ts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for call in fake.calls_to("chat.postMessage"):
            if call.ok and call.body.get("channel") == APPROVAL_CHANNEL:
                return call.body, call.response["ts"]
        time.sleep(0.1)
    raise AssertionError(f"no approval message within {timeout}s: {fake.messages()}")


def _buttons(message: dict) -> dict[str, dict]:
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]
    return {e["text"]["text"]: e for e in actions["elements"]}


def _run(dag_id: str, helper, timeout: float = 150):
    """dag.test() in this (main) thread; ``helper`` in another; a failing helper ends the run."""
    dag = _dag(dag_id)

    def guarded():
        try:
            return helper()
        except BaseException:
            _fail_waiting(dag_id)  # let dag.test() return; the error is re-raised below
            raise

    thread, box = in_thread(guarded)
    dag_run = dag.test()
    thread.join(timeout)
    if "error" in box:
        raise box["error"]
    assert not thread.is_alive(), "helper thread still running"
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    return dag_run, states, box.get("result")


def _ledger(dsn: str, run_id: str) -> list[tuple]:
    return query(dsn, "SELECT actor, action, target, details, reason FROM migration_control.audit_ledger "
                      "WHERE details->>'run_id' = %s ORDER BY id", (run_id,))


# --- acceptance ----------------------------------------------------------------------------
def test_approve_from_slack_after_refused_clicks(stack, slack, caplog):
    """Refused clicks (bad signature, stale, malformed, unknown approval point/run, unauthorised) change nothing;
    a signed Approve from an approver resumes the DAG, is audited and updates the message; a replay
    and a second click are answered, not applied."""
    caplog.set_level(logging.INFO)

    def helper():
        message, ts = _approval_message(slack)
        pending = _pending(PROBE)
        ref = ApprovalRef.from_value(_buttons(message)["Approve"]["value"])
        channel_id = slack.channel_id(APPROVAL_CHANNEL)
        respond_to = slack.url + "respond/T1/42/secret-path"

        def click(user=APPROVER, *, ref=ref, action="migration_approval_approve", secret=SECRET, at=None,
                  raw=None, ts=ts):
            body = form_body(raw if raw is not None else block_actions(
                user_id=user, value=ref.to_value(), action_id=action, channel_id=channel_id, message_ts=ts,
                response_url=respond_to, blocks=message["blocks"], user_name=user.lower()))
            headers = signed_headers(body, secret, timestamp=at)
            return body, headers, post(stack.url, body, headers)

        out = {"message": message, "ts": ts, "ref": ref, "pending": pending}
        out["bad_signature"] = click(secret="not-the-signing-secret")[2]
        out["stale"] = click(at=int(time.time()) - 400)[2]
        out["malformed"] = click(raw="{this is not json")[2]
        out["unknown_point"] = click(ref=replace(ref, approval_point="drop_production"), ts="1.000001")[2]
        # a message this migration never posted, for a run that has no stored request
        out["no_stored_request"] = click(ref=replace(ref, run_id="manual__1999-01-01T00:00:00+00:00"),
                                         ts="1.000001")[2]
        out["other_message"] = click(ts="1.000001")[2]  # the right request, but not the message it was posted as
        # issue 14's attack: INTRUDER may approve phase1_rollback; the value says so but points at write_cutover
        out["mismatch"] = {field: click(INTRUDER, ref=replace(ref, **{field: value}))[2] for field, value in [
            ("approval_point", "phase1_rollback"), ("dag_id", "migration_phase1_rollback"),
            ("run_id", "manual__1999-01-01T00:00:00+00:00"), ("task_id", "cut_over"), ("map_index", 0),
            ("ti_id", str(uuid.uuid4()))]}
        out["unauthorised"] = click(INTRUDER)[2]
        # INTRUDER added to write_cutover after the request was created: the stored assigned_users decide
        cfg_text = stack.config.read_text()
        write_config(stack.config, approvers={**TEST_APPROVERS, "write_cutover": [
            *TEST_APPROVERS["write_cutover"], {"slack": INTRUDER, "airflow": INTRUDER_AIRFLOW}]})
        try:
            out["added_later"] = click(INTRUDER)[2]
        finally:
            stack.config.write_text(cfg_text)
        out["still_pending"] = [p.task_id for p in approvals.pending_approvals(PROBE)]
        out["updates_before"] = len(slack.calls_to("chat.update"))
        out["ledger_before"] = _ledger(stack.dsn, ref.run_id)
        body, headers, out["approve"] = click()
        out["replay"] = post(stack.url, body, headers)
        out["second_click"] = click(action=ACTION_REJECT)[2]
        out["update"] = slack.wait_for("chat.update", timeout=30)[0]
        return out

    dag_run, states, out = _run(PROBE, helper)
    ref = out["ref"]

    # the request message: subject, figures from the gate's XCom, buttons, link, approvers
    message = json.dumps(out["message"]["blocks"])
    assert f"Approval needed: Switch writes for {PROBE} to the new tables?" in message
    for needle in ("*dual_write_success_pct*\\n99.7", "*shadow_mismatch_pct*\\n0.02", "*rollout_pct*\\n100",
                   "cutover_readiness: passed - every pre-cutover check is green", f"<@{APPROVER}>",
                   "/required_actions?map_index=-1", "*Reject* (safe default)"):
        assert needle in message, needle
    assert (ref.dag_id, ref.task_id, ref.approval_point, ref.run_id) == (PROBE, "approve_write_cutover",
                                                                        "write_cutover", dag_run.run_id)
    assert ref.ti_id == out["pending"].ti_id

    # refusals: clear answers, nothing changed
    assert out["bad_signature"][0] == 401 and out["bad_signature"][1]["error"] == "bad_signature"
    assert out["stale"][0] == 401 and out["stale"][1]["error"] == "stale_request"
    assert out["malformed"][0] == 400 and out["malformed"][1]["error"] == "malformed_payload"
    assert "'payload' is not valid JSON" in out["malformed"][1]["message"]
    assert out["unknown_point"][1]["error"] == "unknown_approval_point"
    assert "unknown approval point 'drop_production'" in out["unknown_point"][1]["message"]
    assert out["no_stored_request"][1]["error"] == "no_stored_request", out["no_stored_request"]
    assert out["other_message"][1]["error"] == "outdated_message", out["other_message"]
    for field, (status, body) in out["mismatch"].items():
        assert (status, body["error"]) == (200, "request_mismatch"), (field, body)
        assert f"{field} " in body["message"] and f"!= stored {getattr(ref, field)!r}" in body["message"], body
    assert out["unauthorised"][1]["error"] == "not_authorised" and INTRUDER in out["unauthorised"][1]["message"]
    assert out["added_later"][1]["error"] == "not_authorised", out["added_later"]
    assert f"Airflow user '{INTRUDER_AIRFLOW}', who is not assigned" in out["added_later"][1]["message"]
    assert out["still_pending"] == ["approve_write_cutover"]
    assert out["updates_before"] == 0
    assert [e[1] for e in out["ledger_before"]] == ["approval.requested"]
    ephemeral = [m["text"] for m in slack.messages("respond/T1/42/secret-path")]
    assert any(f"<@{INTRUDER}>, you are not an approver of the *write_cutover* approval point" in t
               for t in ephemeral)
    assert any("unknown approval point 'drop_production'" in t for t in ephemeral)

    # the approval: DAG continued
    assert out["approve"][0] == 200 and out["approve"][1]["outcome"] == "approved", out["approve"]
    assert dag_run.state == "success", states
    assert states == {"evaluate_gate": "success", "approve_write_cutover": "success", "cut_over": "success"}

    # replay and second click: answered, not applied twice
    assert out["replay"][0] == 409 and out["replay"][1]["error"] == "replayed"
    assert out["second_click"][0] == 200 and out["second_click"][1]["error"] == "already_decided"
    assert any("already decided" in t and f"Approved* by <@{APPROVER}>" in t for t in ephemeral + [
        m["text"] for m in slack.messages("respond/T1/42/secret-path")])

    # the ledger records the Slack user (endpoint) and the decision (operator), once each
    ledger = _ledger(stack.dsn, dag_run.run_id)
    actions = [e[1] for e in ledger]
    assert actions == ["approval.requested", "approval.answered_in_slack", "approval.approved"], ledger
    slack_entry = ledger[1]
    assert slack_entry[0] == f"slack:{APPROVER.lower()} ({APPROVER})"
    assert slack_entry[2] == "approval_point:write_cutover"
    assert slack_entry[3]["decision"] == "Approve" and slack_entry[3]["user_id"] == APPROVER
    assert slack_entry[3]["task_resumed"] is True and slack_entry[3]["ti_id"] == ref.ti_id
    assert slack_entry[3]["airflow_user"] == APPROVER_AIRFLOW
    assert f"slack:{APPROVER}" in ledger[2][0]  # MigrationApprovalOperator: responded_by from Airflow's record

    # Airflow's own record of the answer
    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session

    with create_session() as session:
        detail = session.get(HITLDetail, uuid.UUID(ref.ti_id))
        assert detail.chosen_options == ["Approve"] and detail.responded_by["id"] == f"slack:{APPROVER}"

    # the Slack message now shows decision, who and when - and has no buttons
    update = out["update"]
    assert update["channel"] == slack.channel_id(APPROVAL_CHANNEL) and update["ts"] == out["ts"]
    rendered = json.dumps(update["blocks"])
    assert f"Approved* by <@{APPROVER}> ({APPROVER.lower()}) in Slack at " in rendered
    assert not [b for b in update["blocks"] if b["type"] == "actions"]
    assert len(slack.calls_to("chat.update")) == 1 or all(
        "Approved" in json.dumps(c.body["blocks"]) for c in slack.calls_to("chat.update"))

    row = query(stack.dsn, "SELECT decision, decided_by, decided_via FROM migration_control.slack_approvals "
                           "WHERE run_id = %s", (dag_run.run_id,))
    assert row == [("Approve", APPROVER, "slack")]
    outcomes = query(stack.dsn, "SELECT outcome FROM migration_control.slack_requests "
                                "WHERE approval_key LIKE %s OR approval_key LIKE 'migration_phase1_rollback/%%' "
                                "OR approval_key IS NULL ORDER BY received_at",
                     (f"{PROBE}/%",))
    assert [o for (o,) in outcomes] == ["malformed_payload", "unknown_approval_point", "no_stored_request",
                                        "outdated_message", *["request_mismatch"] * 6, "not_authorised",
                                        "not_authorised", "approved", "already_decided"]
    mismatches = query(stack.dsn, "SELECT user_id, detail FROM migration_control.slack_requests "
                                  "WHERE outcome = 'request_mismatch' ORDER BY received_at")
    assert mismatches[0][0] == INTRUDER and "approval_point 'phase1_rollback' != stored 'write_cutover'" in \
        mismatches[0][1]
    assert "REFUSED request_mismatch" in stack.server.output()  # the API server's log names the refusal

    # secrets: never in our logs, the API server's, or the rendered templates Airflow stores
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF

    with create_session() as session:
        rendered_fields = json.dumps([r.rendered_fields for r in session.query(RTIF).filter(
            RTIF.dag_id == PROBE, RTIF.run_id == dag_run.run_id)], default=str)
    assert "Switch writes for slack_approval_probe" in rendered_fields  # the templates were rendered
    for text in (caplog.text, stack.server.output(), rendered_fields):
        assert SECRET not in text and "xoxb-fake" not in text


def test_timeout_pages_on_call_and_does_not_proceed(stack, slack):
    """No answer: a real ``airflow scheduler`` applies the response timeout (its awaiting_input sweep),
    the approval point takes Reject, the step is skipped, on-call gets a critical page, the message says so."""
    from airflow.models.dag import DagModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    scheduler = AirflowProcess(["scheduler"], {**stack.env, "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
                                               "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                                               "AIRFLOW__CORE__PARALLELISM": "1"},  # it runs nothing: 1 idle worker
                               stack.tmp / "scheduler.log")

    def helper():
        message, ts = _approval_message(slack)
        pending = _pending(TIMEOUT_PROBE)
        with create_session() as session:  # paused: the scheduler must only sweep, never run these tasks
            assert session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == TIMEOUT_PROBE)) is True
        scheduler.start()
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with create_session() as session:
                    state = session.scalar(select(TaskInstance.state).where(
                        TaskInstance.dag_id == TIMEOUT_PROBE, TaskInstance.run_id == pending.run_id,
                        TaskInstance.task_id == "approve_write_cutover"))
                if state != "awaiting_input":
                    return pending, state, message, ts
                if not scheduler.alive():
                    raise AssertionError(f"scheduler exited:\n{scheduler.output()[-3000:]}")
                time.sleep(0.5)
            raise AssertionError(f"the scheduler did not time the approval out:\n{scheduler.output()[-3000:]}")
        finally:
            scheduler.stop()

    dag_run, states, (pending, resumed_state, message, ts) = _run(TIMEOUT_PROBE, helper)
    assert resumed_state in ("scheduled", "running", "success"), resumed_state
    assert "AWAITING_INPUT timeout sweep: 1 resolved" in scheduler.output()
    assert states == {"evaluate_gate": "success", "approve_write_cutover": "success", "cut_over": "skipped"}

    from airflow.models.hitl import HITLDetail

    with create_session() as session:
        detail = session.get(HITLDetail, uuid.UUID(pending.ti_id))
        assert detail.chosen_options == ["Reject"] and detail.responded_by is None  # the default, nobody's answer

    (page,) = [m for m in slack.messages() if m["channel"] == CRIT_CHANNEL]
    assert ONCALL in page["text"] and "Approval timed out: Switch writes for" in page["text"]
    rendered = json.dumps(page["blocks"])
    assert "*Reject*: the migration does NOT proceed" in rendered and "*safe default taken*\\nReject" in rendered
    assert "|Approval in Airflow>" in rendered and TIMEOUT_PROBE in rendered
    update = slack.wait_for("chat.update", timeout=10)[0]
    assert "Timed out*: no answer by" in json.dumps(update["blocks"])
    assert not [b for b in update["blocks"] if b["type"] == "actions"]

    ledger = _ledger(stack.dsn, dag_run.run_id)
    assert [(e[0], e[1]) for e in ledger] == [(f"airflow:{TIMEOUT_PROBE}", "approval.requested"),
                                              ("timeout-default", "approval.rejected")]
    assert ledger[1][3]["timed_out"] is True
    assert query(stack.dsn, "SELECT decision, decided_via FROM migration_control.slack_approvals WHERE run_id = %s",
                 (dag_run.run_id,)) == [("Reject", "timeout")]

    # a click after the timeout, by an approver, on the very message: refused, nothing changes
    body = form_body(block_actions(user_id=APPROVER, value=_buttons(message)["Approve"]["value"],
                                   channel_id=slack.channel_id(APPROVAL_CHANNEL), message_ts=ts))
    status, answer = post(stack.url, body, signed_headers(body, SECRET))
    assert (status, answer["error"]) == (200, "timed_out"), answer
    assert "Timed out" in answer["message"]
    assert query(stack.dsn, "SELECT decision, decided_via FROM migration_control.slack_approvals WHERE run_id = %s",
                 (dag_run.run_id,)) == [("Reject", "timeout")]
    assert [e[1] for e in _ledger(stack.dsn, dag_run.run_id)] == ["approval.requested", "approval.rejected"]


def test_slack_errors_never_fail_the_migration_task(stack, slack):
    """Slack rate-limits (429, Retry-After 1 s) and then answers 500 to every post: the notifier retries
    politely and gives up, the approval task still waits, is answered in Airflow (the UI's path), and
    the DAG proceeds."""
    slack.fail_next(status=429, headers={"Retry-After": "1"}, method="chat.postMessage")
    slack.fail_always(status=500, method="chat.postMessage")

    def helper():
        pending = _pending(PROBE)
        started = time.monotonic()
        answer = approvals.respond(PROBE, pending.run_id, pending.task_id, ["Approve"],
                                   {"id": APPROVER_AIRFLOW, "name": "Approver One"})
        return pending, answer, time.monotonic() - started

    started = time.monotonic()
    dag_run, states, (pending, answer, _) = _run(PROBE, helper)
    assert dag_run.state == "success", states
    assert states == {"evaluate_gate": "success", "approve_write_cutover": "success", "cut_over": "success"}
    assert time.monotonic() - started < 120

    statuses = [c.status for c in slack.calls_to("chat.postMessage")]
    assert statuses[0] == 429 and set(statuses[1:]) == {500} and len(statuses) <= 5, statuses  # bounded retries
    assert not slack.calls_to("chat.update")  # the message never existed: nothing to update
    row = query(stack.dsn, "SELECT channel, message_ts, delivery_error, decision, decided_via "
                           "FROM migration_control.slack_approvals WHERE run_id = %s", (dag_run.run_id,))
    assert row[0][:2] == (None, None) and "HTTP 500" in row[0][2] and row[0][3:] == ("Approve", "airflow")
    ledger = _ledger(stack.dsn, dag_run.run_id)
    assert [e[1] for e in ledger] == ["approval.requested", "approval.approved"]
    assert ledger[1][0] == f"Approver One ({APPROVER_AIRFLOW})"


def test_airflow_rest_answers_only_from_assigned_users(stack, slack):
    """One approver model: the HITL request of write_cutover is assigned to the Airflow user of its configured
    approver, so the REST API (the UI's path) answers 403 to anyone else - admin and the approver of another
    approval point included - and 200 to them."""
    from urllib.parse import quote

    from airflow.models.hitl import HITLDetail
    from airflow.utils.session import create_session

    server = stack.server

    def helper():
        pending = _pending(PROBE)
        path = (f"/api/v2/dags/{PROBE}/dagRuns/{quote(pending.run_id, safe='')}/taskInstances/"
                f"{pending.task_id}/{pending.map_index}/hitlDetails")
        out = {"pending": pending}
        status, detail = server.call("GET", path, token=server.token("admin"))
        out["assigned"] = (status, detail)
        for user in (INTRUDER_AIRFLOW, "admin"):
            out[user] = server.call("PATCH", path, {"chosen_options": ["Approve"], "params_input": {}},
                                    token=server.token(user))
        out["still_pending"] = [p.task_id for p in approvals.pending_approvals(PROBE)]
        out[APPROVER_AIRFLOW] = server.call("PATCH", path, {"chosen_options": ["Approve"], "params_input": {}},
                                            token=server.token(APPROVER_AIRFLOW))
        return out

    dag_run, states, out = _run(PROBE, helper)
    status, detail = out["assigned"]
    assert status == 200 and detail["assigned_users"] == [{"id": APPROVER_AIRFLOW, "name": "Approver One"}], detail
    for user in (INTRUDER_AIRFLOW, "admin"):
        status, body = out[user]
        assert status == 403, (user, status, body)
        assert f"User={user} (id={user}) is not a respondent" in json.dumps(body)
    assert out["still_pending"] == ["approve_write_cutover"]
    assert out[APPROVER_AIRFLOW][0] == 200, out[APPROVER_AIRFLOW]
    assert dag_run.state == "success", states
    assert states == {"evaluate_gate": "success", "approve_write_cutover": "success", "cut_over": "success"}
    with create_session() as session:
        recorded = session.get(HITLDetail, uuid.UUID(out["pending"].ti_id))
        assert recorded.responded_by == {"id": APPROVER_AIRFLOW, "name": APPROVER_AIRFLOW}
    ledger = _ledger(stack.dsn, dag_run.run_id)
    assert [e[1] for e in ledger] == ["approval.requested", "approval.approved"]
    assert APPROVER_AIRFLOW in ledger[1][0]
