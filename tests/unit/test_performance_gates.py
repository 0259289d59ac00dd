"""The performance gates: pre-cutover "new-path read p95 within X % of the old path's" (seed: performance
benchmarks meet targets), the read rollout's latency rollback (seed scenario 2), and the gate logs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine.config import load_config
from migration_engine.gates.read_latency import judge_latency, read_latency
from migration_engine.latency import OVERFLOW_MS, histogram, minus, percentile, percentile_floor
from tests.gate_fixtures import SCHEMA, write_operation_stats


@pytest.fixture
def cfg():
    return load_config()


def test_judge_latency_limit_noise_floor_and_thin_data():
    ok = judge_latency(44, 40, max_increase_pct=20, span="1h", new_samples=500, old_samples=500, min_samples=100)
    assert ok.status == "passed" and ok.figures["limit_ms"] == 48.0
    slow = judge_latency(49, 40, max_increase_pct=20, span="1h", new_samples=500, old_samples=500, min_samples=100)
    assert slow.status == "critical" and "49.0 ms vs old-path 40.0 ms" in slow.reason and "+22%" in slow.reason
    # +100 % but only 1 ms: below the noise floor
    tiny = judge_latency(2, 1, max_increase_pct=20, span="1m", new_samples=50, old_samples=50, min_samples=10,
                         min_increase_ms=10)
    assert tiny.status == "passed" and tiny.figures["limit_ms"] == 11.0
    thin = judge_latency(500, 40, max_increase_pct=20, span="1h", new_samples=99, old_samples=500, min_samples=100)
    assert thin.status == "waiting" and "no data is not success" in thin.reason
    assert judge_latency(None, 40, max_increase_pct=20, span="1h").status == "waiting"


def test_latency_histograms_are_additive_and_read_conservatively():
    h = histogram([0.5, 3, 3, 7, 40, 40, 40, 40, 40, 90_000])
    assert sum(h) == 10 and h[0] == 1 and h[-1] == 1
    assert percentile(h, 0.5) == 50.0 and percentile(h, 0.95) == OVERFLOW_MS and percentile([0] * len(h)) is None
    later = [a + b for a, b in zip(h, histogram([300] * 5), strict=True)]
    assert minus(later, h) == tuple(histogram([300] * 5)) and percentile(minus(later, h)) == 500.0
    assert minus(h, later) == tuple([0] * len(h)) and minus((), h) == ()
    assert percentile_floor(histogram([300] * 5)) == 250.0 and percentile_floor(histogram([0.5])) == 0.0


def test_bucket_edges_never_trip_the_rollout_latency_check():
    # ~11 ms vs ~9 ms reads land in the 25 and 10 ms buckets: the floor (10 ms) is not above the limit
    edge = judge_latency(25.0, 10.0, max_increase_pct=20, span="1s", new_samples=20, old_samples=20, min_samples=4,
                         min_increase_ms=10, new_p95_floor=10.0)
    assert edge.status == "passed", edge.reason
    spike = judge_latency(250.0, 10.0, max_increase_pct=20, span="1s", new_samples=20, old_samples=20,
                          min_samples=4, min_increase_ms=10, new_p95_floor=100.0)
    assert spike.status == "critical" and "p95 100-250 ms" in spike.reason


def test_pre_cutover_gate_blocks_a_slow_new_path(control_conn, cfg):
    now = datetime.now(UTC)
    write_operation_stats(control_conn, "shadow_read.old", end=now, minutes=30, requests=100, p95_ms=40)
    write_operation_stats(control_conn, "shadow_read.new", end=now, minutes=30, requests=100, p95_ms=45)
    fine = read_latency(control_conn, cfg, now)
    assert fine.status == "passed", fine.reason
    assert fine.figures["new_p95_ms"] == 45 and fine.figures["old_p95_ms"] == 40

    # The new tables' reads slow down (a missing index): 80 ms against 40 ms -> critical, with both figures.
    write_operation_stats(control_conn, "shadow_read.new", end=now, minutes=30, requests=100, p95_ms=80)
    slow = read_latency(control_conn, cfg, now)
    assert slow.status == "critical", slow.reason
    assert "80.0 ms vs old-path 40.0 ms" in slow.reason and "too slow" in slow.reason

    # Thin data never passes.
    assert read_latency(control_conn, cfg, now, min_samples=10_000).status == "waiting"
    with pytest.raises(ValueError, match="unknown gate param"):
        read_latency(control_conn, cfg, now, max_pct=5)


def test_hold_watch_rolls_back_on_latency_degradation(databases, control_conn, cfg):
    """One check of a hold: error rate fine, new-path p95 far above the old path's -> breach, rolled back."""
    from migration_engine import control
    from migration_engine.cutover.hold_watch import HoldWatch
    from migration_engine.gates.error_rate import take_snapshot

    control.set_flag(control_conn, SCHEMA, "read_new_pct", 25, actor="test", reason="test")
    start = datetime.now(UTC)
    snap = take_snapshot(control_conn, cfg, now=start)
    with control_conn.cursor() as cur:  # the app's stats of this interval: no errors, new path slow
        for path, times in (("old", [4.0] * 290 + [2000.0] * 10), ("new", [120.0] * 100)):
            cur.execute(f"INSERT INTO {SCHEMA}.path_stats (entity, bucket, operation, path, instance, requests, "
                        "errors, p95_latency_ms, latency_histogram) VALUES ('listings', date_trunc('minute', now()), "
                        "'read', %s, 'a', %s, 0, %s, %s)", (path, len(times), max(times), histogram(times)))
    control_conn.commit()
    watch = HoldWatch(conn_id=cfg.connections.legacy, schema=SCHEMA, entities=list(cfg.entities), pct=25,
                      hold_until=(start + timedelta(hours=1)).isoformat(), max_increase_points=0.5, min_requests=4,
                      baseline_pct=0.0, max_inconclusive=3, snapshot=snap.as_dict(), dag_id="d", run_id="r",
                      task_id="read_rollout_25pct", max_p95_increase_pct=20, min_p95_increase_ms=10,
                      baseline_p95_ms=5.0)
    payload = watch.poll()
    assert payload is not None and payload["status"] == "breach", payload
    assert payload["rolled_back"] is True
    # 3 % outliers at 2 s on the old path do not move its p95 (the histogram of the interval, not a max)
    assert "latency degradation" in payload["reason"] and "new-path read p95 100-250 ms vs old path in the same " \
        "interval 5.0 ms" in payload["reason"], payload["reason"]
    assert control.get_flags(control_conn, SCHEMA)["read_new_pct"] == 0


def test_gate_watch_logs_changes_loudly_and_summarises_repeats(control_conn, caplog, monkeypatch):
    from migration_engine.gates import watch as watch_mod
    from migration_engine.gates.watch import GateWatch

    monkeypatch.setattr(watch_mod, "SUMMARY_EVERY", 5)
    w = GateWatch("cutover_read_latency", {"min_samples": 10_000}, dag_id="d", run_id="r", task_id="t", alert=False)
    w.start()
    with caplog.at_level(logging.INFO, logger="migration_engine.gates"):
        for _ in range(11):
            assert w.poll() is None  # waiting: thin data
    lines = [r for r in caplog.records if r.name.startswith("migration_engine.gates")]
    changes = [r for r in lines if "***" in r.getMessage()]
    summaries = [r for r in lines if "still waiting" in r.getMessage()]
    assert len(changes) == 1 and changes[0].levelno == logging.WARNING and "WAITING" in changes[0].getMessage()
    assert len(summaries) == 2 and "6 unchanged evaluations" in summaries[0].getMessage()
    assert len(lines) == 3, [r.getMessage() for r in lines]  # not one (let alone two) per evaluation
