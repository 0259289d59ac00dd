"""Gate building blocks against a real Postgres: window helper, dual-write gate, monitor, trigger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine.config import load_config
from migration_engine.gates.dual_write import dual_write_health
from migration_engine.gates.runner import GateConfigError, GateMonitor, resolve
from migration_engine.gates.window import data_problems, window_stats
from tests.gate_fixtures import SCHEMA, clear_stats, gate_rows, write_stats

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def cfg():
    return load_config()


def test_healthy_window_passes_with_figures(control_conn, cfg):
    write_stats(control_conn, end=NOW, minutes=70, attempts=1000, success_pct=99.5, p95_ms=40)
    res = dual_write_health(control_conn, cfg, NOW)
    assert res.status == "passed", res.reason
    f = res.figures
    assert f["success_pct"] == 99.5 and f["failures"] == 300
    assert f["attempts"] == 60_000 and f["minutes_with_data"] == 60  # only the last hour counts
    assert f["p95_latency_ms"] == 40.0 and f["min_success_pct"] == 95
    assert "99.50% success (59,700/60,000 attempts) over the last 1h 00m" in res.reason


def test_98_pct_blocks_a_gate_configured_at_99(control_conn, cfg):
    write_stats(control_conn, end=NOW, minutes=60, attempts=100, success_pct=98)
    default = dual_write_health(control_conn, cfg, NOW)  # phase-2 bar is 95 %: fine
    assert default.status == "passed", default.reason
    strict = dual_write_health(control_conn, cfg, NOW, min_success_pct=99)
    assert strict.status == "waiting"
    assert strict.figures["success_pct"] == 98.0 and strict.figures["min_success_pct"] == 99
    assert "98.00% success (5,880/6,000 attempts)" in strict.reason and "required 99%" in strict.reason
    # templated params arrive as strings
    assert dual_write_health(control_conn, cfg, NOW, min_success_pct="99").status == "waiting"


@pytest.mark.parametrize(("pct", "p95", "status", "phrase"), [
    (94, 40, "warning", "below the warning threshold 95%"),
    (89, 40, "critical", "below the critical threshold 90%"),
    (99, 650, "warning", "p95 latency 650 ms"),
])
def test_warning_and_critical_thresholds(control_conn, cfg, pct, p95, status, phrase):
    write_stats(control_conn, end=NOW, minutes=60, attempts=100, success_pct=pct, p95_ms=p95)
    res = dual_write_health(control_conn, cfg, NOW)
    assert res.status == status and phrase in res.reason, res.reason


def test_an_hour_without_data_blocks(control_conn, cfg):
    # 4 h window, the second hour (minutes 60..119 before now) has no stats at all
    write_stats(control_conn, end=NOW, minutes=240, attempts=100, success_pct=100, skip_minutes=range(60, 120))
    res = dual_write_health(control_conn, cfg, NOW, window="4h")
    assert res.status == "waiting"
    assert "1h 00m > allowed gap 10m 00s" in res.reason and "10:00 to 11:00 UTC" in res.reason
    assert res.figures["gaps"] == ["2026-03-02 10:00–11:00 UTC"]
    assert res.figures["success_pct"] == 100.0  # the rate is perfect; the hole alone blocks
    # the same data without the hole passes
    write_stats(control_conn, end=NOW, minutes=240, attempts=100, success_pct=100)
    assert dual_write_health(control_conn, cfg, NOW, window="4h").status == "passed"


def test_thin_and_missing_data_never_pass(control_conn, cfg):
    assert dual_write_health(control_conn, cfg, NOW).status == "waiting"  # nothing at all
    res = dual_write_health(control_conn, cfg, NOW)
    assert "no dual-write attempts recorded" in res.reason and "only 0 dual-write attempts" in res.reason
    write_stats(control_conn, end=NOW, minutes=60, attempts=1, success_pct=100)
    thin = dual_write_health(control_conn, cfg, NOW)
    assert thin.status == "waiting" and "only 60 dual-write attempts" in thin.reason
    # stale data: healthy, but it stopped 30 minutes ago
    clear_stats(control_conn)
    write_stats(control_conn, end=NOW - timedelta(minutes=30), minutes=60, attempts=100)
    stale = dual_write_health(control_conn, cfg, NOW)
    assert stale.status == "waiting" and "11:30 to 12:00 UTC" in stale.reason


def test_severity_is_judged_even_with_holes(control_conn, cfg):
    write_stats(control_conn, end=NOW, minutes=60, attempts=100, success_pct=80, skip_minutes=range(10, 40))
    res = dual_write_health(control_conn, cfg, NOW)
    assert res.status == "critical" and "allowed gap" in res.reason


def test_window_helper_is_generic(control_conn):
    """The shadow-read (phase 4) and error-rate (phase 5) gates reuse window_stats on other tables."""
    write_stats(control_conn, end=NOW, minutes=30, attempts=200, success_pct=99.5, table="shadow_read_stats")
    write_stats(control_conn, end=NOW, minutes=30, entity="other", attempts=200, success_pct=50,
                table="shadow_read_stats")
    ws = window_stats(control_conn, schema=SCHEMA, table="shadow_read_stats", total_column="reads_compared",
                      bad_column="mismatches", start=NOW - timedelta(minutes=30), end=NOW,
                      filters={"entity": "listings", "cohort": "all"}, max_gap=timedelta(minutes=5))
    assert (ws.total, ws.bad, ws.buckets) == (6000, 30, 30) and ws.bad_pct == 0.5
    assert ws.largest_gap < timedelta(minutes=1) and not data_problems(ws, min_total=1000)
    assert data_problems(ws, min_total=10_000) == [
        "only 6,000 events in the last 30m 00s; at least 10,000 are needed to judge (thin data is not success)"]
    with pytest.raises(ValueError, match="timezone-aware"):
        window_stats(control_conn, schema=SCHEMA, table="shadow_read_stats", total_column="reads_compared",
                     bad_column="mismatches", start=datetime(2026, 1, 1), end=NOW, max_gap=timedelta(minutes=5))


def test_bad_gate_and_params_are_clear_errors(control_conn, cfg):
    with pytest.raises(GateConfigError, match="unknown gate 'nope'"):
        resolve("nope")
    with pytest.raises(GateConfigError, match="cannot be imported"):
        resolve("migration_engine.gates.dual_write:missing")
    assert resolve("dual_write_health")[1] == "migration_engine.gates.dual_write:dual_write_health"
    with pytest.raises(ValueError, match="unknown gate param"):
        dual_write_health(control_conn, cfg, NOW, min_sucess_pct=99)
    with pytest.raises(ValueError, match="window: 'two days'"):
        dual_write_health(control_conn, cfg, NOW, window="two days")
    with pytest.raises(ValueError, match="entity \\['invoices'\\] not in the config"):
        dual_write_health(control_conn, cfg, NOW, entity="invoices")


def _monitor(databases, clock, **kw):
    import psycopg2

    return GateMonitor("dual_write_health", kw.pop("params", {}), dag_id="dag_x", run_id="run_1",
                       task_id="watch", connect=lambda cfg: psycopg2.connect(databases.legacy_dsn),
                       clock=clock, **kw)


def test_monitor_records_every_evaluation_and_pages_only_on_change(databases, control_conn, fake_slack, cfg):
    write_stats(control_conn, end=NOW, minutes=60, success_pct=93)
    mon = _monitor(databases, lambda: NOW)
    for _ in range(3):
        ev = mon.evaluate()
        assert ev.result.status == "warning"
    (warn,) = fake_slack.messages()
    assert warn["channel"] == cfg.slack.warning_channel
    text = str(warn["blocks"])
    assert "Gate dual_write_health is warning" in warn["text"] and "93.00% success" in warn["text"]
    assert "success_pct" in text and "93.0" in text and "attempts" in text and "6,000" in text

    write_stats(control_conn, end=NOW, minutes=60, success_pct=85)
    assert mon.evaluate().alert == "critical"
    assert mon.evaluate().alert is None  # still critical: no second page
    crit = fake_slack.messages()[1]
    assert crit["channel"] == cfg.slack.critical_channel and "85.00% success" in crit["text"]
    assert "(was warning)" in crit["text"]

    write_stats(control_conn, end=NOW, minutes=60, success_pct=99.5)
    ev = mon.evaluate()
    assert ev.result.status == "passed" and ev.alert == "resolved"
    assert fake_slack.messages()[-1].get("thread_ts")  # the resolution is a reply in the alert's thread

    rows = gate_rows(control_conn, "dual_write_health")
    assert [r[1] for r in rows] == ["warning"] * 3 + ["critical"] * 2 + ["passed"]
    assert all(r[4:] == ("dag_x", "run_1") and r[3]["task_id"] == "watch" for r in rows)

    # a trigger restarted by the triggerer picks up the recorded status: no duplicate page
    write_stats(control_conn, end=NOW, minutes=60, success_pct=85)
    _monitor(databases, lambda: NOW).evaluate()
    n = len(fake_slack.messages())
    again = _monitor(databases, lambda: NOW)
    assert again.evaluate().alert is None and len(fake_slack.messages()) == n


def test_monitor_reports_broken_params_and_database(databases, control_conn):
    bad = _monitor(databases, lambda: NOW, params={"min_success_pct": "lots"})
    ev = bad.evaluate()
    assert ev.permanent and ev.result.status == "failed" and "expected a number" in ev.error
    assert gate_rows(control_conn)[-1][1] == "failed"

    def refuse(cfg):
        raise OSError("connection refused")

    down = GateMonitor("dual_write_health", {}, connect=refuse, clock=lambda: NOW)
    ev = down.evaluate()
    assert not ev.permanent and "connection refused" in ev.error and down.consecutive_errors == 1


def _run_trigger(trigger, timeout=20):
    async def first():
        return await asyncio.wait_for(anext(trigger.run()), timeout)

    return asyncio.run(first())


def test_trigger_serialises_and_fires(databases, control_conn, fake_slack):
    from airflow.sdk._shared.module_loading import import_string

    from migration_engine.airflow.triggers import GateTrigger

    now = datetime.now(UTC)
    write_stats(control_conn, end=now, minutes=61, success_pct=99.9)
    trig = GateTrigger("dual_write_health", {"window": 1800}, poke_interval=0.2, dag_id="d", run_id="r",
                       task_id="t", deadline=(now + timedelta(seconds=30)).isoformat())
    classpath, kwargs = trig.serialize()
    clone = import_string(classpath)(**kwargs)  # what the triggerer does
    assert clone.serialize() == (classpath, kwargs)
    event = _run_trigger(clone)
    assert event.payload["status"] == "passed" and 2900 <= event.payload["figures"]["attempts"] <= 3000

    # critical with fail_on -> fires at once, with the figures, after paging
    write_stats(control_conn, end=now, minutes=61, success_pct=80)
    event = _run_trigger(GateTrigger("dual_write_health", {}, poke_interval=0.2, fail_on=["critical"],
                                     dag_id="d", run_id="r2", task_id="t"))
    assert event.payload["status"] == "critical" and event.payload["figures"]["success_pct"] == 80.0
    assert fake_slack.messages()[-1]["channel"] == load_config().slack.critical_channel

    # waiting (98 % < 99 %) until the deadline -> a timeout event that still carries the figures
    write_stats(control_conn, end=now, minutes=61, success_pct=98)
    event = _run_trigger(GateTrigger(
        "dual_write_health", {"min_success_pct": 99}, poke_interval=0.3, dag_id="d", run_id="r3",
        task_id="t", deadline=(datetime.now(UTC) + timedelta(seconds=1)).isoformat()))
    p = event.payload
    assert p["status"] == "timeout" and p["gate_status"] == "waiting" and p["evaluations"] >= 2
    assert "did not pass" in p["reason"] and "98.00%" in p["reason"] and p["figures"]["success_pct"] == 98.0

    # an unknown gate fails the trigger instead of waiting forever
    event = _run_trigger(GateTrigger("no_such_gate", {}, poke_interval=0.2))
    assert event.payload["status"] == "failed" and "unknown gate" in event.payload["reason"]


def test_a_window_shorter_than_a_bucket_sees_the_current_minute(control_conn, cfg):
    """Rehearsals compress windows (time_scale): a 7 s window still sees the per-minute bucket it is in."""
    now = NOW + timedelta(seconds=30)
    write_stats(control_conn, end=now + timedelta(minutes=1), minutes=3, attempts=500, success_pct=99.8)
    res = dual_write_health(control_conn, cfg, now, window=7.2, max_gap=1.2)
    assert res.status == "passed", res.reason
    assert res.figures["attempts"] == 500 and res.figures["largest_gap"] == "0s"
