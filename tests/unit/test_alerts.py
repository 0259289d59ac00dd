"""migration_engine.alerts (and the layer's task callbacks) against a fake Slack Web API, through the real
slack_sdk client on the Airflow Slack connection."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from devtools.pgcluster import free_port
from migration_engine import alerts
from migration_engine.airflow import callbacks
from migration_engine.config import DEFAULT_CONFIG_PATH, parse_config

# The fixture lives in tests/fake_slack.py; importing it here makes it available to this module
# even before tests/conftest.py registers the module as a plugin (pytest_plugins = ["tests.fake_slack"]).

WARN, CRIT, MENTION = "#zdm-warn", "#zdm-crit", "<!subteam^S0ONCALL>"
BASE_URL = "http://airflow.example:8080/"
RUN_ID = "manual__2025-01-01T00:00:00+00:00"


@pytest.fixture(autouse=True)
def _airflow_imported():
    """Import the Slack hook during setup: Airflow configures logging on first import, which would
    otherwise drop caplog's handler in the middle of the first test that sends an alert."""
    import airflow.providers.slack.hooks.slack  # noqa: F401


@pytest.fixture
def cfg_data():
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["slack"] = {"warning_channel": WARN, "critical_channel": CRIT, "oncall_mention": MENTION,
                     "airflow_base_url": BASE_URL}
    return data


@pytest.fixture
def cfg(cfg_data):
    return parse_config(cfg_data)


@pytest.fixture
def cfg_env(cfg_data, tmp_path, monkeypatch):
    """The same config as a file behind $MIGRATION_CONFIG (what callbacks load themselves)."""
    path = tmp_path / "migration.yaml"
    path.write_text(yaml.safe_dump(cfg_data))
    monkeypatch.setenv("MIGRATION_CONFIG", str(path))
    return parse_config(cfg_data)


def _blocks_text(message: dict) -> str:
    return json.dumps(message.get("blocks", []))


def _block(message: dict, kind: str) -> list[dict]:
    return [b for b in message["blocks"] if b["type"] == kind]


# --- routing and rendering -----------------------------------------------------------------
def test_warning_goes_to_warning_channel_without_mention(fake_slack, cfg):
    result = alerts.send_alert(
        "warning", "Dual-write success below 95%", "Success rate 93.2% over the last hour.",
        figures={"success_pct": 93.2, "attempts": 12000}, dag_id="dual_write_monitor", run_id=RUN_ID, cfg=cfg,
    )
    assert result and result.ok and result.action == "posted"
    assert result.channel == WARN and result.ts and result.channel_id == fake_slack.channel_id(WARN)

    (msg,) = fake_slack.messages()
    assert msg["channel"] == WARN
    assert "subteam" not in msg["text"] and "subteam" not in _blocks_text(msg)
    assert msg["text"].startswith(":warning: [WARNING] Dual-write success below 95%")
    assert _block(msg, "header")[0]["text"]["text"] == ":warning: WARNING: Dual-write success below 95%"
    (call,) = fake_slack.calls_to("chat.postMessage")
    assert call.headers["Authorization"] == "Bearer xoxb-fake"  # the token comes from the connection


def test_critical_goes_to_critical_channel_with_mention_figures_and_link(fake_slack, cfg):
    result = alerts.send_alert(
        "critical", "Dual-write success below 90%", "Dual-write is failing; writes to the new DB are lost.",
        figures={"success_pct": 87.5, "attempts": 12000, "window": "1h"},
        dag_id="dual_write_monitor", task_id="check_success_rate", run_id=RUN_ID,
        link="https://grafana.example/d/migration", cfg=cfg,
    )
    assert result.ok and result.channel == CRIT

    (msg,) = fake_slack.messages()
    assert msg["channel"] == CRIT
    assert msg["text"].startswith(f":rotating_light: [CRITICAL] {MENTION} Dual-write success below 90%")
    header = _block(msg, "header")[0]["text"]["text"]
    assert header == ":rotating_light: CRITICAL: Dual-write success below 90%"
    sections = _block(msg, "section")
    assert sections[0]["text"]["text"].startswith(MENTION + " Dual-write is failing")
    fields = [f["text"] for s in sections for f in s.get("fields", [])]
    assert fields == ["*success_pct*\n87.5", "*attempts*\n12,000", "*window*\n1h"]

    context = " ".join(e["text"] for e in _block(msg, "context")[0]["elements"])
    run_url = (f"{BASE_URL.rstrip('/')}/dags/dual_write_monitor/runs/"
               "manual__2025-01-01T00%3A00%3A00%2B00%3A00/tasks/check_success_rate")
    assert f"<{run_url}|Open in Airflow>" in context
    assert "<https://grafana.example/d/migration|Details>" in context
    assert "DAG `dual_write_monitor`" in context and "task `check_success_rate`" in context
    assert f"run `{RUN_ID}`" in context


def test_info_goes_to_warning_channel_and_channel_override_wins(fake_slack, cfg):
    assert alerts.send_alert("info", "Backfill finished", "All rows copied.", cfg=cfg).channel == WARN
    assert alerts.send_alert("warning", "x", "y", channel="#elsewhere", cfg=cfg).channel == "#elsewhere"
    assert [m["channel"] for m in fake_slack.messages()] == [WARN, "#elsewhere"]


def test_untrusted_text_cannot_ping_or_inject_links(fake_slack, cfg):
    alerts.send_alert("warning", "Bad value <!channel>", "row said <!here> & <http://evil|click>",
                      figures={"value": "<!everyone>"}, cfg=cfg)
    (msg,) = fake_slack.messages()
    rendered = msg["text"] + _blocks_text(msg)
    assert "<!here>" not in rendered and "<!channel>" not in msg["text"] and "<!everyone>" not in rendered
    assert "&lt;!here&gt; &amp; &lt;http://evil|click&gt;" in msg["text"]


def test_unknown_severity_is_sent_as_critical(fake_slack, cfg):
    result = alerts.send_alert("urgent", "t", "x", cfg=cfg)
    assert result.ok and result.severity == "critical" and result.channel == CRIT


def test_without_cfg_uses_the_migration_config(fake_slack, cfg_env):
    result = alerts.send_alert("critical", "t", "x")
    assert result.ok and result.channel == CRIT


def test_broken_config_still_alerts_with_defaults(fake_slack, tmp_path, monkeypatch):
    from migration_engine.config import Slack

    (tmp_path / "bad.yaml").write_text("version: 1\nname: [unclosed\n")
    monkeypatch.setenv("MIGRATION_CONFIG", str(tmp_path / "bad.yaml"))
    result = alerts.send_alert("critical", "t", "x")
    assert result.ok and result.channel == Slack().critical_channel


# --- failures: retries, errors, never raising ----------------------------------------------
def test_rate_limited_then_success_is_delivered_once(fake_slack, cfg):
    fake_slack.fail_next(status=429, headers={"Retry-After": "1"})
    started = time.monotonic()
    result = alerts.send_alert("warning", "t", "x", cfg=cfg)
    elapsed = time.monotonic() - started

    assert result.ok
    assert [c.status for c in fake_slack.calls_to("chat.postMessage")] == [429, 200]
    assert len(fake_slack.messages()) == 1
    assert 1.0 <= elapsed < 5, elapsed  # honoured Retry-After, did not hang


def test_long_retry_after_gives_up_instead_of_blocking(fake_slack, cfg):
    fake_slack.fail_next(status=429, headers={"Retry-After": "120"})
    started = time.monotonic()
    result = alerts.send_alert("warning", "t", "x", cfg=cfg)
    assert not result.ok and "429" in result.error
    assert time.monotonic() - started < 3


def test_permanent_server_error_fails_quickly_without_raising(fake_slack, cfg, caplog, capfd):
    fake_slack.fail_always(status=500)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    result = alerts.send_alert("critical", "Consistency check failed", "12 rows differ", cfg=cfg)
    elapsed = time.monotonic() - started

    assert not result and result.action == "failed" and result.channel == CRIT
    assert "HTTP 500" in result.error and "internal_error" in result.error
    assert len(fake_slack.calls_to("chat.postMessage")) == 1 + alerts.SERVER_ERROR_RETRIES
    assert elapsed < 5, elapsed
    undelivered = [r for r in caplog.records if r.name == "migration_engine.alerts" and r.levelno == logging.ERROR]
    assert undelivered and "ALERT NOT DELIVERED" in undelivered[0].getMessage()
    assert "12 rows differ" in undelivered[0].getMessage()  # the alert text survives in the log
    out, err = capfd.readouterr()  # whatever Airflow's structlog handlers printed
    assert "xoxb-fake" not in caplog.text + out + err  # the token never reaches a log


def test_slack_error_response_is_a_failed_result(fake_slack, cfg):
    fake_slack.fail_next(body={"ok": False, "error": "channel_not_found"})
    result = alerts.send_alert("warning", "t", "x", cfg=cfg)
    assert not result.ok and "channel_not_found" in result.error
    assert len(fake_slack.calls_to("chat.postMessage")) == 1  # a Slack error is not retried


def test_rejected_blocks_fall_back_to_plain_text(fake_slack, cfg):
    fake_slack.fail_next(body={"ok": False, "error": "invalid_blocks"})
    result = alerts.send_alert("critical", "t", "the details", figures={"n": 1}, cfg=cfg)
    assert result.ok
    first, second = fake_slack.calls_to("chat.postMessage")
    assert "blocks" in first.body and "blocks" not in second.body
    assert second.body["text"].startswith(f":rotating_light: [CRITICAL] {MENTION} t: the details")


def test_unreachable_slack_fails_quickly(monkeypatch, cfg):
    dead = f"http://127.0.0.1:{free_port()}/api/"
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_API_DEFAULT",
                       json.dumps({"conn_type": "slack", "password": "xoxb-fake", "extra": {"base_url": dead}}))
    started = time.monotonic()
    result = alerts.send_alert("critical", "t", "x", cfg=cfg)
    assert not result.ok and result.action == "failed"
    assert "Connection refused" in result.error or "URLError" in result.error
    assert time.monotonic() - started < 5


def test_connection_without_token_is_a_failed_result(monkeypatch, cfg):
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_API_DEFAULT", json.dumps({"conn_type": "slack"}))
    result = alerts.send_alert("critical", "t", "x", cfg=cfg)
    assert not result.ok and "password" in result.error


def test_redact_removes_tokens():
    assert alerts.redact("token xoxb-123-abc and Bearer xoxp-9 and xapp-1-A") == \
        "token xoxb-*** and Bearer *** and xapp-***"


# --- failure callback ----------------------------------------------------------------------
def _fake_context(exc: BaseException | None):
    ti = SimpleNamespace(
        dag_id="migration_backfill", task_id="copy_batch", run_id="scheduled__2025-01-01T00:00:00+00:00",
        try_number=3, max_tries=2, map_index=-1,
        log_url="http://localhost:8080/dags/migration_backfill/runs/x/tasks/copy_batch?try_number=3",
    )
    return {"ti": ti, "task_instance": ti, "run_id": ti.run_id, "exception": exc}


def test_task_failure_callback_posts_a_critical_alert(fake_slack, cfg_env):
    exc = RuntimeError("canceling statement due to lock timeout; token xoxb-leaked-123 " + "x" * 5000)
    assert callbacks.task_failure_callback(_fake_context(exc)) is None

    (msg,) = fake_slack.messages()
    assert msg["channel"] == CRIT
    assert msg["text"].startswith(f":rotating_light: [CRITICAL] {MENTION} Task failed: migration_backfill.copy_batch")
    rendered = msg["text"] + _blocks_text(msg)
    for needle in ("migration_backfill", "copy_batch", "scheduled__2025-01-01T00:00:00+00:00",
                   "RuntimeError: canceling statement due to lock timeout", "try 3 of 3"):
        assert needle in rendered, needle
    assert "xoxb-leaked" not in rendered
    assert len(_block(msg, "section")[0]["text"]["text"]) <= 3000  # the exception text is truncated
    context = " ".join(e["text"] for e in _block(msg, "context")[0]["elements"])
    assert "|Task log>" in context and "/tasks/copy_batch" in context


def test_failure_callbacks_never_raise(fake_slack, cfg_env):
    fake_slack.fail_always(status=500)
    assert callbacks.task_failure_callback(_fake_context(ValueError("boom"))) is None
    assert callbacks.task_failure_callback({}) is None
    assert callbacks.task_failure_callback(None) is None
    assert callbacks.task_retry_callback(_fake_context(ValueError("boom"))) is None


def test_task_retry_callback_is_a_warning(fake_slack, cfg_env):
    callbacks.task_retry_callback(_fake_context(ValueError("boom")))
    (msg,) = fake_slack.messages()
    assert msg["channel"] == WARN and MENTION not in msg["text"]
    assert "Task is retrying: migration_backfill.copy_batch" in msg["text"]


def test_failure_callback_under_dag_test(fake_slack, airflow_db, cfg_env, monkeypatch):
    """A real task fails under dag.test(); its task-level on_failure_callback pages Slack."""
    from airflow.dag_processing.dagbag import DagBag

    folder = Path(__file__).resolve().parents[1] / "dags_for_tests"
    local = "airflow.dag_processing.bundles.local.LocalDagBundle"
    # dag.test() finds the DAG through the configured bundles: keep dags-folder, add the test DAGs.
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([
        {"name": "dags-folder", "classpath": local, "kwargs": {}},
        {"name": "alerts-test-dags", "classpath": local, "kwargs": {"path": str(folder)}},
    ]))
    bag = DagBag(dag_folder=str(folder / "alerts_probe.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["alerts_failure_probe"]

    dag_run = dag.test()
    assert dag_run.state == "failed"
    (msg,) = fake_slack.messages()
    assert msg["channel"] == CRIT
    rendered = msg["text"] + _blocks_text(msg)
    assert "Task failed: alerts_failure_probe.explode" in msg["text"]
    assert dag_run.run_id in rendered and "try 1 of 1" in rendered
    assert "RuntimeError: kaboom from the alerts probe" in rendered


# --- dedup (control schema `alerts` table) -------------------------------------------------
_db_numbers = itertools.count()


@pytest.fixture
def control_db(pg_cluster):
    import psycopg2

    from migration_engine.control import ensure_control_schema

    name = f"alerts_t{next(_db_numbers)}"
    pg_cluster.create_database(name, drop_existing=True)
    conns = []

    def connect():
        conn = psycopg2.connect(pg_cluster.dsn(name))
        conns.append(conn)
        return conn

    ensure_control_schema(connect(), "migration_control")
    yield connect
    for conn in conns:
        conn.close()


def _alert_row(conn, key):
    with conn.cursor() as cur:
        cur.execute("SELECT status, severity, channel, slack_ts, occurrences, delivery_error "
                    "FROM migration_control.alerts WHERE dedup_key = %s", (key,))
        row = cur.fetchone()
    conn.commit()
    return row


def test_dedup_updates_the_open_alert_then_resolves(fake_slack, cfg, control_db):
    conn = control_db()
    send = dict(dedup_key="dual_write:listings", conn=conn, cfg=cfg)

    first = alerts.send_alert("warning", "Dual-write below 95%", "93.1%", figures={"pct": 93.1}, **send)
    assert first.ok and first.action == "posted" and first.occurrences == 1
    second = alerts.send_alert("warning", "Dual-write below 95%", "92.4%", figures={"pct": 92.4}, **send)
    assert second.ok and second.action == "updated" and second.ts == first.ts and second.occurrences == 2
    assert len(fake_slack.messages()) == 1
    (update,) = fake_slack.messages("chat.update")
    assert update["channel"] == fake_slack.channel_id(WARN) and update["ts"] == first.ts
    assert "92.4" in json.dumps(update["blocks"]) and "Seen 2 times" in json.dumps(update["blocks"])
    assert _alert_row(conn, "dual_write:listings")[:5] == ("open", "warning", first.channel_id, first.ts, 2)

    # Escalation changes the channel: a new message in the critical channel (this one pages).
    third = alerts.send_alert("critical", "Dual-write below 90%", "88%", **send)
    assert third.action == "posted" and third.channel == CRIT and third.occurrences == 3
    assert [m["channel"] for m in fake_slack.messages()] == [WARN, CRIT]

    resolved = alerts.resolve_alert("dual_write:listings", "back to 99.8%", conn=conn, cfg=cfg)
    assert resolved.ok and resolved.action == "resolved"
    reply = fake_slack.messages()[-1]
    assert reply["thread_ts"] == third.ts and "Resolved" in reply["text"] and "back to 99.8%" in reply["text"]
    last_update = fake_slack.messages("chat.update")[-1]
    assert last_update["ts"] == third.ts and "RESOLVED" in json.dumps(last_update["blocks"])
    assert _alert_row(conn, "dual_write:listings")[0] == "resolved"

    assert alerts.resolve_alert("dual_write:listings", conn=conn, cfg=cfg).action == "noop"
    again = alerts.send_alert("warning", "Dual-write below 95%", "94%", **send)
    assert again.action == "posted" and again.occurrences == 1  # a new incident pages again


def test_dedup_records_undelivered_alerts_and_retries_posting(fake_slack, cfg, control_db):
    conn = control_db()
    fake_slack.fail_next(body={"ok": False, "error": "channel_not_found"})
    first = alerts.send_alert("critical", "t", "x", dedup_key="k", conn=conn, cfg=cfg)
    assert not first.ok
    status, _sev, channel, ts, occurrences, error = _alert_row(conn, "k")
    assert (status, channel, ts, occurrences) == ("open", None, None, 1) and "channel_not_found" in error

    second = alerts.send_alert("critical", "t", "x", dedup_key="k", conn=conn, cfg=cfg)
    assert second.ok and second.action == "posted" and second.occurrences == 2
    assert _alert_row(conn, "k")[2:4] == (second.channel_id, second.ts)


def test_dedup_falls_back_to_posting_when_the_control_db_fails(fake_slack, cfg, control_db):
    conn = control_db()
    result = alerts.send_alert("critical", "t", "x", dedup_key="k", conn=conn, schema="no_such_schema", cfg=cfg)
    assert result.ok and result.action == "posted"
    assert len(fake_slack.messages()) == 1
    assert conn.autocommit is False and conn.closed == 0  # left usable (rolled back)


def test_dedup_concurrent_senders_page_once(fake_slack, cfg, control_db):
    conns = [control_db() for _ in range(4)]
    results = []
    barrier = threading.Barrier(len(conns))

    def sender(conn):
        barrier.wait()
        results.append(alerts.send_alert("critical", "t", "x", dedup_key="race", conn=conn, cfg=cfg))

    threads = [threading.Thread(target=sender, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r.ok for r in results) and len(results) == 4
    assert sorted(r.action for r in results) == ["posted", "updated", "updated", "updated"]
    assert len(fake_slack.messages()) == 1
    assert _alert_row(conns[0], "race")[4] == 4


def test_dedup_restores_autocommit(fake_slack, cfg, control_db):
    conn = control_db()
    conn.autocommit = True
    assert alerts.send_alert("warning", "t", "x", dedup_key="ac", conn=conn, cfg=cfg).ok
    assert alerts.send_alert("warning", "t", "x", dedup_key="ac", conn=conn, cfg=cfg).action == "updated"
    assert conn.autocommit is True
