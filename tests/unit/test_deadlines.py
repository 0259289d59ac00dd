"""Deadlines that page (config ``deadlines``): the overdue page from a deadline callback's context,
the run watch that resolves it, and approval reminders before the response timeout.

Real control DB, fake Slack; the callbacks are called with the context the scheduler builds
(``Deadline.handle_miss``: ``{"dag_run": DAGRunResponse json, "deadline": {...}}``). That the
scheduler and triggerer really fire them is tests/e2e/test_deadlines_e2e.py.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from migration_engine import deadlines
from migration_engine.airflow import callbacks
from migration_engine.approvals import store
from migration_engine.approvals.payload import ApprovalRef
from migration_engine.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, parse_config
from tests.slack_fixtures import (
    APPROVER,
    CRIT_CHANNEL,
    ONCALL,
    WARN_CHANNEL,
    control_database,
    query,
    write_config,
)

_n = itertools.count()
HOURLY = "migration_consistency_hourly"


# --- config ----------------------------------------------------------------------------------
@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def test_default_deadlines():
    d = load_config(DEFAULT_CONFIG_PATH).deadlines
    assert d.run_deadline(HOURLY) == timedelta(minutes=45)
    assert d.run_deadline("migration_phase2_dual_write") == timedelta(days=8)
    assert d.run_deadline("migration_phase6_cleanup") == timedelta(hours=12)  # default
    assert d.approval_reminders == [50, 80] and d.reminder_poll == timedelta(minutes=1)


def test_deadlines_can_be_switched_off_and_are_scaled(raw):
    raw["deadlines"] = {"consistency_hourly": None, "phase_runs": {"default": None, "migration_setup": "2h"},
                        "approval_reminders": []}
    d = parse_config(raw, time_scale=0.5).deadlines
    assert d.run_deadline(HOURLY) is None and d.run_deadline("migration_phase5_cutover") is None
    assert d.run_deadline("migration_setup") == timedelta(hours=1)  # a Window: time_scale applies


@pytest.mark.parametrize(("section", "needle"), [
    ({"phase_runs": {"migration_setup": "1h"}}, "phase_runs needs a 'default' entry"),
    ({"phase_runs": {"default": "1h", HOURLY: "1h"}}, "set by deadlines.consistency_hourly"),
    ({"phase_runs": {"default": "1h", "no spaces please": "1h"}}, "must be DAG ids"),
    ({"approval_reminders": [80, 50]}, "strictly increasing"),
    ({"approval_reminders": [50, 100]}, "deadlines.approval_reminders"),
    ({"consistency_hourly": "soon"}, "deadlines.consistency_hourly"),
    ({"consistency_hourly": "0s"}, "positive"),
    ({"pages": True}, "deadlines.pages"),
])
def test_bad_deadlines_name_the_key(raw, section, needle):
    raw["deadlines"] = section
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert needle in str(err.value)


def test_every_phase_runs_key_is_a_migration_dag():
    from tests.airflow_helpers import load_dagbag

    keys = set(load_config(DEFAULT_CONFIG_PATH).deadlines.phase_runs) - {"default"}
    assert keys <= set(load_dagbag().dags), keys - set(load_dagbag().dags)


# --- overdue page ----------------------------------------------------------------------------
@pytest.fixture
def control_env(pg_cluster, fake_slack, tmp_path, monkeypatch):
    dsn = control_database(pg_cluster, f"deadlines_{next(_n)}")
    path = write_config(tmp_path / "migration.yaml")
    monkeypatch.setenv("MIGRATION_CONFIG", str(path))
    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", dsn)
    return dsn


def _context(dag_id: str, run_id: str, state: str = "running", queued_minutes_ago: int = 50) -> dict:
    queued = datetime.now(UTC) - timedelta(minutes=queued_minutes_ago)
    return {"dag_run": {"dag_id": dag_id, "dag_run_id": run_id, "state": state, "queued_at": queued.isoformat(),
                        "start_date": (queued + timedelta(seconds=3)).isoformat(), "run_type": "scheduled"},
            "deadline": {"id": "0190-abc", "deadline_time": (queued + timedelta(minutes=45)).isoformat()}}


def _alert(dsn: str, key: str) -> list[tuple]:
    return query(dsn, "SELECT status, severity, occurrences FROM migration_control.alerts WHERE dedup_key = %s",
                 (key,))


def test_missed_deadline_pages_once_per_dag_and_the_run_watch_resolves_it(control_env, fake_slack, monkeypatch):
    dsn = control_env
    assert asyncio.run(callbacks.deadline_missed(2700, context=_context(HOURLY, "scheduled__10"))) == "posted"
    (page,) = fake_slack.messages()
    assert page["channel"] == CRIT_CHANNEL and ONCALL in page["text"]
    blocks = json.dumps(page["blocks"])
    for needle in ("Run `scheduled__10` has not finished 45m after it was queued (state *running*)",
                   "no later hourly run starts", "*Next:* open the run in Airflow",
                   "deadlines.consistency_hourly", "*running for*\\n50m", f"/dags/{HOURLY}/runs/scheduled__10"):
        assert needle in blocks, needle

    # the run queued behind it misses its deadline too: the same message, updated
    assert callbacks.deadline_missed_sync(2700, _context(HOURLY, "scheduled__11", state="queued")) == "updated"
    assert len(fake_slack.messages()) == 1
    assert "scheduled__11" in json.dumps(fake_slack.messages("chat.update")[-1]["blocks"])
    assert _alert(dsn, f"deadline:{HOURLY}") == [("open", "critical", 2)]

    # the run watch: still running -> nothing; ended -> resolved in the thread, and it stops
    states = iter(["running", "failed"])
    monkeypatch.setattr(callbacks, "_dagrun_state", lambda dag_id, run_id: next(states))
    out = asyncio.run(callbacks.run_watch(poll_seconds=0, context=_context(HOURLY, "scheduled__10")))
    assert out == f"watched {HOURLY}/scheduled__10 until failed; sent []; resolved ['deadline:{HOURLY}']"
    reply = fake_slack.messages()[-1]
    assert reply["thread_ts"] and "run scheduled__10 ended (failed)" in reply["text"]
    assert _alert(dsn, f"deadline:{HOURLY}") == [("resolved", "critical", 2)]


def test_phase_run_page_says_which_limit_to_raise(control_env, fake_slack):
    dag_id = "migration_phase5_cutover"
    assert callbacks.deadline_missed_sync(3 * 86400, _context(dag_id, "manual__x", queued_minutes_ago=4400)) == "posted"
    (page,) = fake_slack.messages()
    blocks = json.dumps(page["blocks"])
    assert f"Migration run overdue: {dag_id}" in page["text"] and ONCALL in page["text"]
    assert "has not finished 3d after it was queued" in blocks and f"deadlines.phase_runs.{dag_id}" in blocks
    assert "A gate or an approval waiting is shown as such" in blocks


def test_a_broken_context_or_slack_outage_never_raises(control_env, fake_slack, caplog):
    assert callbacks.deadline_missed_sync(60, {"deadline": {}}) == "failed"
    assert callbacks.deadline_missed_sync(60, None) == "failed"
    assert fake_slack.calls == [] and "names no DAG run" in caplog.text
    assert asyncio.run(callbacks.run_watch(context={"dag_run": {}})).startswith("not watched")
    fake_slack.fail_always(status=500)
    assert callbacks.deadline_missed_sync(60, _context("migration_setup", "manual__y")) == "failed"
    # recorded as undelivered in the dedup row, so the next occurrence still pages
    assert query(control_env, "SELECT delivery_error IS NOT NULL FROM migration_control.alerts "
                              "WHERE dedup_key = 'deadline:migration_setup'") == [(True,)]


# --- approval reminders ----------------------------------------------------------------------
def _request(dsn: str, *, run_id: str, timeout: timedelta | None = timedelta(minutes=10),
             task_id: str = "approve_write_cutover") -> datetime:
    """An approval request as the Slack notifier records it; returns its requested_at."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        ref = ApprovalRef("migration_phase5_cutover", run_id, task_id, -1, f"ti-{run_id}", "write_cutover")
        now = datetime.now(UTC)
        store.save_request(conn, "migration_control", ref, subject="Switch writes to the new tables?",
                           channel="C1", message_ts="1.1", blocks=[], delivery_error=None,
                           expires_at=now + timeout if timeout else None)
    finally:
        conn.close()
    (requested,) = query(dsn, "SELECT requested_at FROM migration_control.slack_approvals WHERE run_id = %s",
                         (run_id,))[0]
    return requested


def _execute(dsn: str, text: str, params=None) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(text, params)
    finally:
        conn.close()


def _sweep(dsn: str, run_id: str, at: datetime) -> deadlines.SweepResult:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        return deadlines.sweep_approval_reminders(load_config(), conn, dag_id="migration_phase5_cutover",
                                                  run_id=run_id, now=at)
    finally:
        conn.close()


def test_reminders_at_50_and_80_percent_then_resolved_when_answered(control_env, fake_slack):
    dsn = control_env
    t0 = _request(dsn, run_id="r1")
    assert _sweep(dsn, "r1", t0 + timedelta(minutes=4)).sent == []  # 40 %: nothing yet
    assert fake_slack.calls == []

    first = _sweep(dsn, "r1", t0 + timedelta(minutes=5, seconds=30))
    assert len(first.sent) == 1 and first.sent[0].endswith(":50")
    (warning,) = fake_slack.messages()
    assert warning["channel"] == WARN_CHANNEL and ONCALL not in warning["text"]  # a reminder, not a page
    blocks = json.dumps(warning["blocks"])
    for needle in ("Approval still unanswered: Switch writes to the new tables?", "(50% of its 10m response timeout)",
                   "safe default *Reject*", f"<@{APPROVER}>", "Required Actions",
                   "/dags/migration_phase5_cutover/runs/r1/tasks/approve_write_cutover"):
        assert needle in blocks, needle
    assert _sweep(dsn, "r1", t0 + timedelta(minutes=6)).sent == []  # once per step, however often it looks

    second = _sweep(dsn, "r1", t0 + timedelta(minutes=8, seconds=30))
    assert len(second.sent) == 1 and second.sent[0].endswith(":80")
    page = fake_slack.messages()[-1]
    assert page["channel"] == CRIT_CHANNEL and ONCALL in page["text"]  # the last step pages
    assert "(80% of its 10m response timeout)" in json.dumps(page["blocks"])
    assert _sweep(dsn, "r1", t0 + timedelta(minutes=9)).sent == []

    _execute(dsn, "UPDATE migration_control.slack_approvals SET decision = 'Approve', decided_via = 'slack', "
                  "decided_by = %s, decided_at = now() WHERE run_id = 'r1'", (APPROVER,))
    done = _sweep(dsn, "r1", t0 + timedelta(minutes=9))
    assert sorted(k[-2:] for k in done.resolved) == ["50", "80"]
    assert all("answered: Approve in Slack" in m["text"] for m in fake_slack.messages()[-2:])
    assert _sweep(dsn, "r1", t0 + timedelta(minutes=9)).resolved == []  # nothing left to resolve
    assert len(fake_slack.messages()) == 4


def test_a_late_watcher_sends_only_the_latest_reminder(control_env, fake_slack):
    t0 = _request(control_env, run_id="r2")
    sent = _sweep(control_env, "r2", t0 + timedelta(minutes=9)).sent
    assert len(sent) == 1 and sent[0].endswith(":80")  # no burst of 50 % and 80 %
    assert _sweep(control_env, "r2", t0 + timedelta(minutes=9, seconds=30)).sent == []  # 50 % never comes late
    assert len(fake_slack.messages()) == 1


def test_no_reminders_without_a_timeout_after_it_or_when_switched_off(control_env, fake_slack, tmp_path,
                                                                     monkeypatch):
    t0 = _request(control_env, run_id="r3", timeout=None)
    assert _sweep(control_env, "r3", t0 + timedelta(days=3)).sent == []
    t1 = _request(control_env, run_id="r4")
    assert _sweep(control_env, "r4", t1 + timedelta(minutes=11)).sent == []  # timed out: the timeout page's job
    data = yaml.safe_load(open(write_config(tmp_path / "off.yaml")).read())
    data["deadlines"] = {**copy.deepcopy(data.get("deadlines", {})), "approval_reminders": []}
    (tmp_path / "off.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MIGRATION_CONFIG", str(tmp_path / "off.yaml"))
    t2 = _request(control_env, run_id="r5")
    assert _sweep(control_env, "r5", t2 + timedelta(minutes=9)).sent == []
    assert fake_slack.calls == []
