"""Acceptance: a deliberately hung hourly consistency run pages within its deadline.

Deadline Alerts are evaluated by the *scheduler* (its loop marks a deadline missed and queues the
callback) and our callbacks are ``AsyncCallback``s run by the *triggerer*; ``dag.test()`` does
neither (and its runs have no ``queued_at``, so no queued-at deadline is even created). So this
test runs a real ``airflow scheduler`` and ``airflow triggerer`` on this session's metadata DB,
the real ``migration_consistency_hourly`` DAG from dags/ (its deadline set to a few seconds by
config), a fake Slack Web API and a real control database.

"Hung": the DAG is paused, so the queued run never finishes - to the deadline machinery that is
the same as a run stuck in a task (the deadline counts from ``queued_at`` and is dropped only
when the run ends), and the scheduler executes nothing of ours. A second run triggered behind it
(max_active_runs=1: the scheduler itself creates no scheduled run while one is active; a triggered
one waits queued) misses its deadline too: the same Slack message is updated, not a second page.
When the hung run is ended, its watcher resolves the page in the thread.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import yaml

from tests.slack_fixtures import (
    AIRFLOW_BASE_URL,
    CRIT_CHANNEL,
    ONCALL,
    ROOT,
    AirflowProcess,
    control_database,
    query,
    write_config,
)

HOURLY = "migration_consistency_hourly"
KEY = f"deadline:{HOURLY}"
pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture
def deadline_env(pg_cluster, airflow_db, fake_slack, tmp_path, monkeypatch):
    dsn = control_database(pg_cluster, "deadlines_e2e")
    path = write_config(tmp_path / "migration.yaml")
    data = yaml.safe_load(path.read_text())
    data["deadlines"] = {"consistency_hourly": "4s", "phase_runs": {"default": "12h"}, "reminder_poll": "1s"}
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MIGRATION_CONFIG", str(path))
    # each test stores the hourly DAG with its own deadlines: Airflow skips a serialized-DAG write within
    # 30 s of the last one, so a second test would create its run from the first test's DAG version
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")
    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", dsn)
    monkeypatch.setenv("AIRFLOW_CONN_MARKETPLACE_DB", dsn)
    return SimpleNamespace(dsn=dsn, tmp=tmp_path)


def _sync_paused_hourly_dag(overdue: timedelta = timedelta(seconds=4)):
    """Parse dags/migration_consistency_hourly.py with the test config and store it, paused."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session
    from sqlalchemy import update

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{HOURLY}.py"))
    assert not bag.import_errors, bag.import_errors
    assert [(a.name, a.interval) for a in bag.dags[HOURLY].deadline] == [
        ("watch", timedelta(0)), ("overdue", overdue)]
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel
    from airflow.models.serialized_dag import SerializedDagModel

    with create_session() as session:  # the runs this test creates come from exactly this version
        stored = SerializedDagModel.get_dag(HOURLY, session=session)
        alerts = [session.get(DeadlineAlertModel, uuid.UUID(a)) if isinstance(a, str) else a for a in stored.deadline]
        got = {a.name: (a.interval.get("__data__") if isinstance(a.interval, dict) else a.interval) for a in alerts}
        assert got == {"watch": 0, "overdue": overdue.total_seconds()}, got
    with create_session() as session:
        session.execute(update(DagModel).where(DagModel.dag_id == HOURLY).values(is_paused=True))


def _queue_run(hour: datetime, *, triggered: bool = False) -> str:
    """A run queued as the scheduler queues a scheduled one, or as a trigger (REST/UI) queues one;
    creating it creates its deadlines."""
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    kind = DagRunType.MANUAL if triggered else DagRunType.SCHEDULED
    run_id = f"{kind.value}__{hour.isoformat()}"
    with create_session() as session:
        dag = SerializedDagModel.get_dag(HOURLY, session=session)
        dag.create_dagrun(run_id=run_id, logical_date=hour, data_interval=(hour, hour + timedelta(hours=1)),
                          run_after=hour + timedelta(hours=1), run_type=kind,
                          triggered_by=DagRunTriggeredByType.REST_API if triggered else DagRunTriggeredByType.TIMETABLE,
                          state=DagRunState.QUEUED, session=session)
    return run_id


def _deadlines(run_id: str) -> list[tuple[str, bool]]:
    from airflow.models.dagrun import DagRun
    from airflow.models.deadline import Deadline
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(Deadline.deadline_time, Deadline.missed, DagRun.queued_at)
                               .join(DagRun, DagRun.id == Deadline.dagrun_id)
                               .where(DagRun.dag_id == HOURLY, DagRun.run_id == run_id)).all()
    return [(round((d - q).total_seconds()), missed) for d, missed, q in rows]


def _callback_outputs() -> list[tuple[str | None, str | None]]:
    """(state, output) of every deadline callback the triggerer finished."""
    from airflow.models.callback import Callback
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return [tuple(r) for r in session.execute(select(Callback.state, Callback.output)).all()]


def _end_run(run_id: str, state: str = "failed") -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:  # what on-call does: "mark the run failed"
        session.execute(update(DagRun).where(DagRun.dag_id == HOURLY, DagRun.run_id == run_id)
                        .values(state=state, end_date=datetime.now(UTC)))


def _wait(what: str, check, procs: list[AirflowProcess], timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        for proc in procs:
            if not proc.alive():
                raise AssertionError(f"{proc.args[0]} exited:\n{proc.output()[-4000:]}")
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.args[0]}:\n{p.output()[-3000:]}" for p in procs)
    raise AssertionError(f"{what}: not within {timeout}s\n{logs}")


def test_hung_hourly_run_pages_within_its_deadline(deadline_env, fake_slack):
    import os

    _sync_paused_hourly_dag()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    hung = _queue_run(hour)
    assert sorted(_deadlines(hung)) == [(0, False), (4, False)]  # watch at once, overdue after 4 s

    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "1"}
    procs = [AirflowProcess(["triggerer"], env, deadline_env.tmp / "triggerer.log"),
             AirflowProcess(["scheduler"], env, deadline_env.tmp / "scheduler.log")]
    for proc in procs:
        proc.start()
    try:
        def crit_pages():
            return [m for m in fake_slack.messages() if m["channel"] == CRIT_CHANNEL]

        (page,) = _wait("the overdue page for the hung run", crit_pages, procs)
        assert sorted(_deadlines(hung)) == [(0, True), (4, True)]
        text, blocks = page["text"], json.dumps(page["blocks"])
        assert ONCALL in text and f"Hourly consistency run overdue: {HOURLY}" in text
        assert f"Run `{hung}` has not finished 4s after it was queued (state *queued*)" in blocks
        assert "no later hourly run starts" in blocks
        assert "*Next:* open the run in Airflow" in blocks and "mark the run failed" in blocks
        assert f"{AIRFLOW_BASE_URL}/dags/{HOURLY}/runs/" in blocks  # the link to the run
        assert query(deadline_env.dsn, "SELECT status, occurrences FROM migration_control.alerts "
                                       "WHERE dedup_key = %s", (KEY,)) == [("open", 1)]

        # a run triggered behind the hung one waits queued and misses its deadline too: one page, updated
        later = _queue_run(hour + timedelta(hours=1), triggered=True)
        updates = _wait("the update for the triggered run", lambda: [
            u for u in fake_slack.messages("chat.update") if later in json.dumps(u["blocks"])], procs)
        assert "Seen 2 times" in json.dumps(updates[-1]["blocks"])
        assert len(crit_pages()) == 1  # no second page
        assert query(deadline_env.dsn, "SELECT status, occurrences FROM migration_control.alerts "
                                       "WHERE dedup_key = %s", (KEY,)) == [("open", 2)]

        # on-call ends the hung run: its watcher resolves the page in the thread
        _end_run(hung)
        replies = _wait("the resolved reply", lambda: [m for m in fake_slack.messages()
                                                       if m.get("thread_ts") and "Resolved" in m["text"]], procs)
        assert f"run {hung} ended (failed)" in replies[0]["text"]
        assert replies[0]["thread_ts"] == fake_slack.calls_to("chat.postMessage")[0].response["ts"]
        assert query(deadline_env.dsn, "SELECT status FROM migration_control.alerts WHERE dedup_key = %s",
                     (KEY,)) == [("resolved",)]
        # the watch ended with its run, and the triggerer recorded it (and is still running)
        _wait("the watch's result", lambda: [o for st, o in _callback_outputs()
                                             if st == "success" and o and f"{HOURLY}/{hung} until failed" in o], procs)
        assert all(p.alive() for p in procs)
    finally:
        for proc in procs:
            proc.stop()
        for run_id in (hung, locals().get("later")):
            if run_id:
                _end_run(run_id)


def test_unanswered_approval_gets_reminders_from_the_run_watch(deadline_env, fake_slack):
    """The run's watch (in the real triggerer) reminds of an approval request nobody answers: a
    warning at 50 % mentioning the approvers, a page at 80 %, both resolved once it is answered."""
    import os

    import psycopg2

    from migration_engine.approvals import store
    from migration_engine.approvals.payload import ApprovalRef
    from tests.slack_fixtures import APPROVER, WARN_CHANNEL

    cfg_path = os.environ["MIGRATION_CONFIG"]
    data = yaml.safe_load(open(cfg_path).read())
    data["deadlines"]["consistency_hourly"] = "1h"  # this test is about the reminders only
    open(cfg_path, "w").write(yaml.safe_dump(data))
    _sync_paused_hourly_dag(overdue=timedelta(hours=1))
    run_id = _queue_run(datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5))

    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "1"}
    procs = [AirflowProcess(["triggerer"], env, deadline_env.tmp / "triggerer2.log"),
             AirflowProcess(["scheduler"], env, deadline_env.tmp / "scheduler2.log")]
    for proc in procs:
        proc.start()
    try:
        _wait("the run's watch to start", lambda: (0, True) in _deadlines(run_id), procs)
        conn = psycopg2.connect(deadline_env.dsn)
        try:  # the request row, as the approval task's Slack notifier writes it
            ref = ApprovalRef(HOURLY, run_id, "approve_probe", -1, "ti-probe", "write_cutover")
            store.save_request(conn, "migration_control", ref, subject="Probe approval?", channel="C1",
                               message_ts="1.1", blocks=[], delivery_error=None,
                               expires_at=datetime.now(UTC) + timedelta(seconds=20))
        finally:
            conn.close()

        (warning,) = _wait("the 50 % reminder", lambda: [m for m in fake_slack.messages()
                                                         if m["channel"] == WARN_CHANNEL], procs)
        assert "Approval still unanswered: Probe approval?" in warning["text"] and f"<@{APPROVER}>" in warning["text"]
        assert "50% of its 20s response timeout" in json.dumps(warning["blocks"])
        (page,) = _wait("the 80 % reminder", lambda: [m for m in fake_slack.messages()
                                                      if m["channel"] == CRIT_CHANNEL], procs)
        assert ONCALL in page["text"] and "80% of its 20s response timeout" in json.dumps(page["blocks"])

        with psycopg2.connect(deadline_env.dsn) as conn, conn.cursor() as cur:
            cur.execute("UPDATE migration_control.slack_approvals SET decision = 'Approve', decided_via = 'airflow', "
                        "decided_at = now() WHERE run_id = %s", (run_id,))
        conn.close()
        replies = _wait("both reminders resolved", lambda: (lambda r: r if len(r) == 2 else None)(
            [m for m in fake_slack.messages() if m.get("thread_ts") and "answered: Approve in Airflow" in m["text"]]),
            procs)
        assert {r["thread_ts"] for r in replies} == {c.response["ts"] for c in fake_slack.calls_to("chat.postMessage")
                                                     if c.body.get("channel") in (WARN_CHANNEL, CRIT_CHANNEL)
                                                     and not c.body.get("thread_ts")}
        assert len([m for m in fake_slack.messages() if not m.get("thread_ts")]) == 2  # nothing else was sent
    finally:
        for proc in procs:
            proc.stop()
        _end_run(run_id)
