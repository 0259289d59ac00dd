"""Escalation that on-call can live with: task alerts deduplicate per task and resolve when the task
succeeds again; alerts Slack never accepted are still on record. Real control DB, fake Slack."""

from __future__ import annotations

import itertools
import json
import logging
import time
from types import SimpleNamespace

import pytest

from migration_engine import alerts
from migration_engine.airflow import callbacks
from tests.slack_fixtures import CRIT_CHANNEL, ONCALL, WARN_CHANNEL, control_database, query, write_config

_n = itertools.count()


@pytest.fixture
def control_env(pg_cluster, fake_slack, tmp_path, monkeypatch):
    dsn = control_database(pg_cluster, f"slack_escalation_{next(_n)}")
    monkeypatch.setenv("MIGRATION_CONFIG", str(write_config(tmp_path / "migration.yaml")))
    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", dsn)
    return dsn


def _context(run: str, exc: BaseException | None = None, try_number: int = 1):
    ti = SimpleNamespace(dag_id="migration_consistency_hourly", task_id="compare_listings", run_id=run,
                         try_number=try_number, max_tries=0, map_index=-1, log_url=None)
    return {"ti": ti, "task_instance": ti, "run_id": run, "exception": exc}


def test_persistent_task_failure_updates_one_thread_and_resolves(control_env, fake_slack):
    dsn = control_env
    callbacks.task_failure_callback(_context("scheduled__01", RuntimeError("12 rows differ")))
    callbacks.task_failure_callback(_context("scheduled__02", RuntimeError("15 rows differ")))
    callbacks.task_failure_callback(_context("scheduled__03", RuntimeError("15 rows differ")))

    (page,) = fake_slack.messages()  # paged once ...
    assert page["channel"] == CRIT_CHANNEL and ONCALL in page["text"]
    updates = fake_slack.messages("chat.update")  # ... then the same message was updated
    assert len(updates) == 2 and "Seen 3 times" in json.dumps(updates[-1]["blocks"])
    assert "scheduled__03" in json.dumps(updates[-1]["blocks"])
    key = "task_failure:migration_consistency_hourly.compare_listings"
    assert query(dsn, "SELECT status, occurrences FROM migration_control.alerts WHERE dedup_key = %s",
                 (key,)) == [("open", 3)]

    callbacks.task_success_callback(_context("scheduled__04"))
    reply = fake_slack.messages()[-1]
    assert reply["thread_ts"] == fake_slack.calls_to("chat.postMessage")[0].response["ts"]
    assert "Resolved" in reply["text"] and "succeeded in run scheduled__04" in reply["text"]
    assert "RESOLVED" in json.dumps(fake_slack.messages("chat.update")[-1]["blocks"])
    assert query(dsn, "SELECT status FROM migration_control.alerts WHERE dedup_key = %s", (key,)) == [("resolved",)]

    calls = len(fake_slack.calls)
    callbacks.task_success_callback(_context("scheduled__05"))  # nothing open: no Slack traffic at all
    assert len(fake_slack.calls) == calls

    callbacks.task_failure_callback(_context("scheduled__06", RuntimeError("again")))  # a new incident pages
    assert len(fake_slack.messages()) == 3 and fake_slack.messages()[-1]["channel"] == CRIT_CHANNEL


def test_retries_warn_on_their_own_thread(control_env, fake_slack):
    callbacks.task_retry_callback(_context("r1", ValueError("lock timeout"), try_number=1))
    callbacks.task_retry_callback(_context("r1", ValueError("lock timeout"), try_number=2))
    callbacks.task_failure_callback(_context("r1", ValueError("lock timeout"), try_number=3))
    assert [m["channel"] for m in fake_slack.messages()] == [WARN_CHANNEL, CRIT_CHANNEL]
    assert len(fake_slack.messages("chat.update")) == 1  # the second retry updated the warning


def test_slack_down_never_blocks_and_the_failure_is_recorded(control_env, fake_slack, caplog):
    caplog.set_level(logging.DEBUG)
    dsn = control_env
    fake_slack.fail_always(status=500)
    started = time.monotonic()
    callbacks.task_failure_callback(_context("down_1", RuntimeError("boom")))
    result = alerts.send_alert("critical", "Dual-write below 90%", "88.2% over 1h", figures={"pct": 88.2})
    assert time.monotonic() - started < 10
    assert not result.ok

    (row,) = query(dsn, "SELECT status, slack_ts, delivery_error FROM migration_control.alerts")
    assert row[0] == "open" and row[1] is None and "HTTP 500" in row[2]  # dedup row keeps the error
    (entry,) = query(dsn, "SELECT actor, action, target, details, reason FROM migration_control.audit_ledger")
    assert entry[:3] == ("alerts", "alert.undelivered", "Dual-write below 90%")
    assert entry[3]["severity"] == "critical" and entry[3]["channel"] == CRIT_CHANNEL and "HTTP 500" in entry[4]
    assert entry[3]["text"] == "88.2% over 1h" and entry[3]["figures"] == {"pct": 88.2}
    assert fake_slack.token not in caplog.text and fake_slack.token not in json.dumps(entry[3])

    fake_slack.reset()  # Slack is back: the next occurrence posts the alert that never arrived
    callbacks.task_failure_callback(_context("down_2", RuntimeError("boom")))
    assert len(fake_slack.messages()) == 1
    assert query(dsn, "SELECT occurrences, delivery_error FROM migration_control.alerts") == [(2, None)]


def test_without_a_control_database_alerts_still_go_out(fake_slack, monkeypatch):
    from devtools.pgcluster import free_port

    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere")
    started = time.monotonic()
    callbacks.task_failure_callback(_context("x", RuntimeError("boom")))
    callbacks.task_success_callback(_context("y"))
    assert len(fake_slack.messages()) == 1 and time.monotonic() - started < 10
