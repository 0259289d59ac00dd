"""The read rollout's pure decisions: the error-rate judgement and the per-step hold monitor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from migration_engine.cutover.rollout import HoldMonitor
from migration_engine.gates import GateResult
from migration_engine.gates.error_rate import PathCounts, judge


def test_judge_compares_new_path_with_the_baseline_and_fails_closed():
    kw = {"max_increase_points": 0.5, "min_requests": 50, "span": "5m"}
    same = judge(PathCounts(1000, 3), PathCounts(9000, 18), baseline_pct=5.0, **kw)
    assert same.status == "passed" and same.figures["baseline_source"] == "old path, same interval"
    spike = judge(PathCounts(1000, 9), PathCounts(9000, 18), baseline_pct=None, **kw)
    assert spike.status == "critical" and spike.figures["increase_points"] == pytest.approx(0.7)
    at_100 = judge(PathCounts(1000, 4), PathCounts(0, 0), baseline_pct=0.1, **kw)
    assert at_100.status == "passed" and at_100.figures["baseline_source"] == "pre-rollout old-path baseline"
    thin = judge(PathCounts(49, 0), PathCounts(9000, 0), baseline_pct=0.1, **kw)
    assert thin.status == "waiting" and "no data is not success" in thin.reason
    blind = judge(PathCounts(1000, 0), PathCounts(10, 0), baseline_pct=None, **kw)
    assert blind.status == "waiting" and "no baseline" in blind.reason


def test_hold_monitor_decisions():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ok = GateResult("read_error_rate", "passed", "fine")
    thin = GateResult("read_error_rate", "waiting", "only 3 new-path reads")
    bad = GateResult("read_error_rate", "critical", "error rate +2 points")
    m = HoldMonitor(25, t0 + timedelta(minutes=10), max_inconclusive=3)
    assert m.observe(ok, now=t0, flag_pct=25).kind == "continue"
    assert m.observe(thin, now=t0, flag_pct=25).kind == "continue"
    assert m.observe(ok, now=t0 + timedelta(minutes=10), flag_pct=25).kind == "passed"
    m = HoldMonitor(25, t0 + timedelta(minutes=10), max_inconclusive=3)
    d = m.observe(bad, now=t0, flag_pct=25)
    assert d.kind == "breach" and d.rollback and d.figures["step_pct"] == 25
    m = HoldMonitor(25, t0 + timedelta(minutes=10), max_inconclusive=2)
    m.observe(thin, now=t0, flag_pct=25)
    assert m.observe(thin, now=t0, flag_pct=25).kind == "no_data"
    m = HoldMonitor(25, t0, max_inconclusive=5)
    assert m.observe(thin, now=t0, flag_pct=25).kind == "no_data"  # a hold without any judged interval
    m = HoldMonitor(25, t0 + timedelta(minutes=10), max_inconclusive=3)
    d = m.observe(ok, now=t0, flag_pct=0)
    assert d.kind == "flag_changed" and not d.rollback
    assert m.observe_error("db down", now=t0, max_errors=2).kind == "continue"
    assert m.observe_error("db down", now=t0, max_errors=2).kind == "error"
