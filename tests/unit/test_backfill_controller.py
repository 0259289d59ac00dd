"""The latency-budget controller (pure, synthetic signals) and the health signals on both databases."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from migration_engine.backfill import RangeWorker, backfill_settings, plan_entity
from migration_engine.backfill.controller import Baseline, RateController, Sample, median, percentile
from migration_engine.backfill.throttle import Health, WalRate, pause_reasons, read_health
from migration_engine.config import LatencyBudget, load_config
from migration_engine.errors import ConfigError
from tests.backfill_fixtures import add_listings, compare, connectors

SCHEMA = "migration_control"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cfg():
    return load_config()


def _budget(**kw) -> LatencyBudget:
    # the base rules (limits relative to each probe's own baseline, x decrease_factor cuts, a cut at most
    # every signal_samples decisions, additive regrowth); the shipped refinements have their own tests
    return LatencyBudget(**{"enabled": True, "start_rows_per_second": 10_000, "min_rows_per_second": 500,
                            "signal_samples": 1, "probe_allowance": "relative", "cut_in_proportion": False,
                            "cut_interval": None, "fast_recovery": False, "halt_pressure": None, **kw})


def _shipped(**kw) -> LatencyBudget:
    return LatencyBudget(**{"enabled": True, "start_rows_per_second": 10_000, "min_rows_per_second": 500, **kw})


BASE = Baseline({"legacy": 2.0, "new": 2.0}, app_p95_ms=10.0)


def test_controller_slow_start_doubles_then_grows_additively_below_80_pct_of_the_budget():
    c = RateController(_budget(), BASE)
    assert c.slow_start
    d = c.decide(Sample({"legacy": 2.1, "new": 2.15}), achieved_rows_per_second=10_000)  # new uses 37 %
    assert (d.action, d.rows_per_second) == ("increase", pytest.approx(20_000))  # slow start: x2
    assert d.signal == "new probe latency" and d.limit == pytest.approx(2.4)  # +20 % over 2.0
    d = c.decide(Sample({"new": 2.2}), achieved_rows_per_second=20_000)  # 50 %: still doubling
    assert d.rows_per_second == pytest.approx(40_000) and c.slow_start
    d = c.decide(Sample({"new": 2.33}), achieved_rows_per_second=40_000)  # 82 %: slow start ends, hold
    assert (d.action, d.rows_per_second) == ("hold", pytest.approx(40_000)) and not c.slow_start
    # additive from here: 15 % of the rate where slow start ended (6,000 rows/s) per calm decision
    d = c.decide(Sample({"new": 2.25}), achieved_rows_per_second=40_000)  # 62 % of the budget: grow
    assert (d.action, d.rows_per_second) == ("increase", pytest.approx(46_000))
    d = c.decide(Sample({"new": 2.1}), achieved_rows_per_second=46_000)
    assert d.rows_per_second == pytest.approx(52_000)  # the same step, not a percentage of the rate
    assert c.decide(Sample({"new": 2.38}), 52_000).action == "hold"  # 95 %: at the edge, within it


def test_controller_never_grows_past_twice_what_the_copy_achieved():
    c = RateController(_budget(), BASE)
    for _ in range(20):
        d = c.decide(Sample({"legacy": 1.5, "new": 1.5}), achieved_rows_per_second=8_000)
    assert d.rows_per_second == pytest.approx(16_000)  # the database does 8k/s: no wind-up past 2x
    assert c.decide(Sample({"legacy": 1.5}), 8_000).action == "hold"  # at the anti-wind-up bound


def test_controller_cuts_when_a_signal_crosses_its_budget_and_holds_near_it():
    c = RateController(_budget(signal_samples=3), BASE)
    d = c.decide(Sample({"legacy": 2.0, "new": 3.0}), 10_000)  # new: 3.0 ms > 2.4 ms
    assert (d.action, d.rows_per_second, d.signal) == ("decrease", pytest.approx(6000), "new probe latency")
    assert d.pressure == pytest.approx(2.5)  # +1.0 ms of an allowed +0.4 ms
    assert not c.slow_start  # a breach ends slow start
    assert "decrease to 6,000 rows/s: new probe latency 3.00 ms (budget 2.40 ms, pressure 2.50)" in d.text()
    # the next cut waits for signal_samples decisions, so the signal can show the first one's effect
    assert [c.decide(Sample({"new": 3.0}), 6000).action for _ in range(3)] == ["hold", "hold", "decrease"]
    assert c.decide(Sample({"new": 2.35}), 3600).action == "hold"  # uses 88 % of the budget: between 0.8 and 1
    for _ in range(30):
        c.decide(Sample({"new": 9.0}), 3600)
    assert c.rate == 500  # never below min_rows_per_second


def test_controller_signals_app_p95_and_replication_lag_of_either_database():
    c = RateController(_budget(max_replication_lag=timedelta(seconds=30)), BASE)
    d = c.decide(Sample({"legacy": 2.0}, app_p95_ms=13.0), 10_000)  # app: 13 > 12 ms
    assert (d.action, d.signal) == ("decrease", "application p95")
    d = c.decide(Sample({"legacy": 2.0}, lag_seconds={"legacy": 1.0, "new": 45.0}), 10_000)
    assert (d.action, d.signal, d.value, d.limit) == ("decrease", "new replication lag", 45.0, 30.0)
    assert "new replication lag 45.00s (budget 30.00s" in d.text()
    # no reading at all (no stats contract, no replicas, probe down): grow toward the cap
    capped = RateController(_budget(), Baseline({"legacy": None, "new": None}), max_rows_per_second=11_000)
    d = capped.decide(Sample({"legacy": None, "new": None}), None)
    assert (d.action, d.rows_per_second, d.pressure) == ("increase", 11_000, None)
    assert capped.decide(Sample(), None).action == "hold"  # the operator's fixed cap still binds
    assert capped.worker_rate(2) == 5500


def test_controller_settles_under_a_synthetic_load_model():
    """Latency rises with the rate (2 ms + 1 ms per 10k rows/s): the controller must keep the
    signal within the budget most of the time and end near the highest rate the budget allows."""
    b = _budget(signal_samples=2, start_rows_per_second=2000)
    c = RateController(b, Baseline({"new": 2.0}))
    seen, rates = [], []
    rate = c.rate
    for _ in range(300):
        latency = 2.0 + rate / 10_000
        seen.append(latency)
        rates.append(rate)
        rate = c.decide(Sample({"new": latency}), rate).rows_per_second
    allowed = 4000  # 2.4 ms budget <=> 4000 rows/s
    assert sum(v <= 2.4 for v in seen[100:]) / 200 >= 0.8  # within the budget most of the time
    mean = sum(rates[100:]) / 200
    assert 0.75 * allowed <= mean <= allowed, mean  # and uses most of what it allows


def _peak_latency(step: int, rate: float) -> float:
    """The synthetic load model: 2 ms, +0.3 ms in the peak (5 of every 15 decisions), +0.1 ms per 1,000 rows/s."""
    return 2.0 + (0.3 if 5 <= step % 15 < 10 else 0.0) + rate / 10_000


def _drive_under_peaks(c: RateController, steps: int = 450) -> tuple[list[float], list[float]]:
    """Feed ``c`` the model's latency at its own rate for ``steps`` decisions: (signal, rate) per step."""
    seen, rates, rate = [], [], c.rate
    for step in range(steps):
        v = _peak_latency(step, rate)
        seen.append(v)
        rates.append(rate)
        rate = c.decide(Sample({"new": v}), rate).rows_per_second
    return seen, rates


def test_controller_backs_off_in_load_peaks_and_beats_the_best_fixed_rate_of_the_same_model():
    """A varying load (the application's peak adds 0.3 ms for 5 of every 15 decisions): a fixed rate
    must fit the peak (<= 1,000 rows/s keeps 2.4 ms); the controller cuts in the peak and regrows in
    the trough (allowing 4,000 rows/s), within the budget most of the time."""
    c = RateController(_budget(signal_samples=1, start_rows_per_second=1000), Baseline({"new": 2.0}))

    seen, rates = _drive_under_peaks(c)
    best_fixed = max(r for r in range(100, 5000, 100) if all(_peak_latency(i, r) <= 2.4 for i in range(15)))
    assert best_fixed == 1000
    tail = slice(150, 450)
    # each peak onset costs a decision or three over the budget (it reacts after the fact): 80 % within
    assert sum(v <= 2.4 for v in seen[tail]) / 300 >= 0.75, "over budget too often"
    peak = [r for i, r in enumerate(rates) if i >= 150 and 6 <= i % 15 < 10]
    trough = [r for i, r in enumerate(rates) if i >= 150 and not 5 <= i % 15 < 11]
    assert sum(peak) / len(peak) < sum(trough) / len(trough)  # it backs off in the peaks
    assert sum(rates[tail]) / 300 >= 1.5 * best_fixed


def test_probe_allowance_from_the_app_p95_is_absolute_and_falls_back_to_relative():
    """+20 % of a 10 ms application p95 = 2 ms more per request: each probe may rise 2 ms over its own
    baseline (not +20 % of a 2 ms lookup = 0.4 ms); the app's p95 itself stays relative (12 ms)."""
    c = RateController(_budget(probe_allowance="app_p95"), BASE)
    assert c.allowance_ms == pytest.approx(2.0)
    assert c.limits() == {"legacy probe latency": pytest.approx(4.0), "new probe latency": pytest.approx(4.0),
                          "application p95": pytest.approx(12.0)}
    d = c.decide(Sample({"new": 3.0}), 10_000)  # +1 ms of the 2 ms allowed: grow
    assert (d.action, d.signal, d.limit, d.pressure) == ("increase", "new probe latency", pytest.approx(4.0),
                                                         pytest.approx(0.5))
    d = c.decide(Sample({"new": 4.5}), 20_000)  # +2.5 ms: over
    assert (d.action, d.pressure) == ("decrease", pytest.approx(1.25))
    assert c.decide(Sample({"new": 3.0}, app_p95_ms=12.5), 12_000).signal == "application p95"
    # the same reading relative to the probe's own baseline (2.4 ms) is over the budget
    rel = RateController(_budget(), BASE)
    assert rel.allowance_ms is None and rel.decide(Sample({"new": 3.0}), 10_000).action == "decrease"
    # the operator's stated p95 (their APM's, over all requests) wins over the stats contract's
    stated = RateController(_budget(probe_allowance="app_p95", app_p95_ms=4.0), BASE)
    assert stated.allowance_ms == pytest.approx(0.8) and stated.limits()["new probe latency"] == pytest.approx(2.8)
    assert stated.limits()["application p95"] == pytest.approx(12.0)  # the contract's own signal: relative to it
    # no p95 from the stats contract: the allowance falls back to relative
    no_app = RateController(_budget(probe_allowance="app_p95"), Baseline({"new": 2.0}))
    assert no_app.allowance_ms is None and no_app.limits()["new probe latency"] == pytest.approx(2.4)


def test_commit_latency_is_a_signal_of_its_own():
    base = Baseline({"legacy": 0.5, "new": 0.5}, app_p95_ms=5.0, commit_ms={"new": 1.0})
    c = RateController(_budget(probe_allowance="app_p95"), base)  # allowance 1 ms
    assert c.limits()["new commit latency"] == pytest.approx(2.0)
    d = c.decide(Sample({"legacy": 0.6, "new": 0.7}, commit_ms={"new": 3.0}), 10_000)
    assert (d.action, d.signal, d.value, d.pressure) == ("decrease", "new commit latency", 3.0, pytest.approx(2.0))
    assert "decrease to 6,000 rows/s: new commit latency 3.00 ms (budget 2.00 ms, pressure 2.00)" in d.text()
    assert c.decide(Sample({"new": 0.6}, commit_ms={"new": None}), 6000).action == "increase"  # no reading: lookups
    assert Baseline({"new": 1.0}).as_dict()["commit_ms"] == {}  # without the commit probe


def test_a_cut_is_deeper_for_a_larger_overshoot_and_the_rate_recovers_when_the_peak_is_over():
    c = RateController(_shipped(probe_allowance="relative", halt_pressure=None), Baseline({"new": 2.0}))
    assert c.decide(Sample({"new": 2.48}), 10_000).action == "decrease"  # pressure 1.2: x 0.6 (0.8/1.2 = 0.67)
    assert c.rate == pytest.approx(6000)
    assert [c.decide(Sample({"new": 3.0}), 6000).action for _ in range(2)] == ["hold", "decrease"]  # cut_interval 2
    assert c.rate == pytest.approx(6000 * 0.8 / 2.5)  # pressure 2.5: x 0.32, not x 0.6
    c.decide(Sample({"new": 2.0}), 3000)  # pressure 0: back towards the rate before the run of cuts at once
    assert c.rate == pytest.approx(6000)  # (within twice the achieved rate, as every increase)
    c.decide(Sample({"new": 2.1}), 6000)  # still under 0.5: on to the rate before the run of cuts (10,000)
    assert c.rate == pytest.approx(10_000)
    d = c.decide(Sample({"new": 2.1}), 10_000)  # at the pre-cut rate: additive from here
    assert d.action == "increase" and c.rate == pytest.approx(10_000 + 1500)  # 15 % of 10,000 (slow start's end)
    c.decide(Sample({"new": 20.0}), 11_500)  # pressure 45: at most a quarter of the rate goes
    assert c.rate == pytest.approx(11_500 * 0.25)
    c.decide(Sample({"new": 2.26}), 2875)  # 0.65 of the budget: within it, not calm enough to jump back
    assert c.rate == pytest.approx(2875 + 1500)


def test_the_shipped_controller_beats_the_best_fixed_rate_under_load_peaks_within_the_budget():
    """The synthetic peak model of the base-rules test above, with the shipped defaults (proportional cuts,
    cut interval 2, fast recovery). The model's signal has no window (the probe's p90 over a window lags,
    which is what reset_after_cut and fast recovery answer), so here the cut interval of 2 costs one more
    decision over the budget per peak onset than the base rules: 2/3 of the decisions within it."""
    c = RateController(_shipped(probe_allowance="relative", signal_samples=3, start_rows_per_second=1000),
                       Baseline({"new": 2.0}))

    seen, rates = _drive_under_peaks(c)
    tail = slice(150, 450)
    assert sum(v <= 2.4 for v in seen[tail]) / 300 >= 0.65, "over budget too often"
    assert sum(rates[tail]) / 300 >= 2.0 * 1000  # the best fixed rate within budget at every step: 1,000


def test_a_peak_far_over_the_budget_halts_at_once_and_recovery_returns_to_the_rate_before_the_peak():
    """A signal at twice its allowance or more is a load peak on the database: straight to the minimum (each
    second at the trough's rate costs the peak's requests); when it is over, fast recovery returns to the
    rate before the whole run of cuts - the trough's rate - not to the last step down of the run."""
    c = RateController(_shipped(probe_allowance="relative", cut_interval=1, start_rows_per_second=20_000,
                                min_rows_per_second=200), Baseline({"new": 2.0}))
    c.slow_start = False
    c._step = 1000.0
    d = c.decide(Sample({"new": 2.5}), 20_000)  # pressure 1.25: a proportional cut (x 0.6)
    assert d.action == "decrease" and c.rate == pytest.approx(12_000)
    d = c.decide(Sample({"new": 3.2}), 12_000)  # pressure 3: the peak - to the minimum, not x 0.25
    assert d.action == "decrease" and c.rate == 200
    assert c.decide(Sample({"new": 3.0}), 200).action == "hold"  # at the minimum while the peak lasts
    state = c.to_dict()
    c = RateController.from_dict(c.b, c.baseline, state)  # another range makes the next decision
    d = c.decide(Sample({"new": 2.05}), 20_000)  # pressure 0.125: the peak is over
    assert d.action == "increase" and c.rate == pytest.approx(20_000)  # the rate before the run of cuts
    assert c.decide(Sample({"new": 2.05}), 20_000).rows_per_second == pytest.approx(21_000)  # additive again
    # a new run of cuts remembers the new pre-peak rate
    c.decide(Sample({"new": 2.5}), 21_000)
    c.decide(Sample({"new": 4.0}), 12_600)
    assert c.rate == 200 and c.decide(Sample({"new": 2.0}), 30_000).rows_per_second == pytest.approx(21_000)
    off = RateController(_shipped(probe_allowance="relative", halt_pressure=None), Baseline({"new": 2.0}))
    off.slow_start, off._step = False, 1000.0
    off.decide(Sample({"new": 3.2}), 10_000)
    assert off.rate == pytest.approx(10_000 * 0.8 / 3)  # null: proportional cuts only


def test_median_percentile_and_budget_validation():
    assert median([]) is None and median([3.0, 1.0, 2.0]) == 2.0 and median([1.0, 2.0, 4.0, 3.0]) == 2.5
    assert percentile([], 90) is None and percentile([5.0], 90) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 90) == 90.0  # nearest rank
    assert percentile([float(i) for i in range(1, 11)], 95) == 10.0 and percentile([1.0, 2.0], 50) == 1.0
    cfg = load_config()
    assert cfg.backfill.throttle.budget.enabled is False  # off until the bench is reproduced
    with pytest.raises(ConfigError, match=r"backfill\.throttle\.budget\.decrease_factor: Input should be less than 1"):
        backfill_settings(cfg, throttle={"budget": {"decrease_factor": 1.5}})
    with pytest.raises(ConfigError, match=r"backfill\.throttle\.budget\.probe_allowance: Input should be 'relative' "
                                          r"or 'app_p95'"):
        backfill_settings(cfg, throttle={"budget": {"probe_allowance": "p99"}})
    with pytest.raises(ConfigError, match=r"new_replication_lag_function: .*not schema.function"):
        backfill_settings(cfg, throttle={"signals": {"new_replication_lag_function": "x; DROP TABLE y"}})


def test_pause_reasons_name_the_new_database_vacuum_and_wal(cfg):
    s = backfill_settings(cfg, throttle={"signals": {"max_wal_bytes_per_second": 50_000_000}})
    calm = Health(3, 0, 2, 0, 0, None, None, 0, None, 0, 0, 1e6)
    assert pause_reasons(calm, s) == []
    busy = Health(3, 0, 2, 0, 0, None, None, 1, 45.0, 0, 1, 80e6)
    assert pause_reasons(busy, s) == [
        "replication lag 45.0s on 1 replica(s) of the new database (> 30s)",
        "vacuum running on the new table the copy writes (autovacuum pause)",
        "new database writes 80.0 MB/s of WAL (> 50 MB/s)",
    ]
    off = backfill_settings(cfg, throttle={"signals": {"pause_on_autovacuum": False}})
    assert pause_reasons(Health(3, 0, 2, 0, 0, None, None, 0, None, 1, 1, 80e6), off) == []  # WAL check off (0)


def test_wal_rate_between_two_readings(databases, backfill_conns):
    t = iter([0.0, 2.0, 3.0])
    w = WalRate(clock=lambda: next(t))
    assert w.update(1000.0) is None and w.update(5000.0) == 2000.0 and w.update(None) is None
    real = WalRate()
    legacy, new = backfill_conns
    assert real.read(new) is None
    databases.query("new", "CREATE TABLE public.wal_probe AS SELECT g FROM generate_series(1, 20000) AS g")
    assert real.read(new) > 0


def _fake_lag(databases):
    """A lag function on the new database reading a table the test sets (the simulated replica)."""
    databases.query("new", """
        CREATE TABLE public.fake_replica (lag_seconds float8);
        INSERT INTO public.fake_replica VALUES (60);
        CREATE FUNCTION public.fake_replication_lag(OUT replicas bigint, OUT lag_seconds float8)
            LANGUAGE sql AS 'SELECT 1::bigint, lag_seconds FROM public.fake_replica';
    """)


def test_read_health_reads_both_databases(databases, backfill_conns, cfg):
    _fake_lag(databases)
    legacy, new = backfill_conns
    s = backfill_settings(cfg, throttle={"signals": {"new_replication_lag_function": "public.fake_replication_lag"}})
    h = read_health(legacy, new, schema=SCHEMA, entity="listings", s=s,
                    tables={"legacy": ("public", "marketplace_listings"), "new": ("marketplace", "service_listings")})
    assert (h.new_replicas, h.new_replication_lag_seconds) == (1, 60.0)
    assert (h.replicas, h.replication_lag_seconds) == (0, None)  # the test cluster has no standby
    assert (h.legacy_vacuums, h.new_vacuums) == (0, 0)


def test_replica_lag_on_the_new_database_pauses_the_copy_until_it_clears(databases, backfill_conns, cfg, caplog):
    """Acceptance: simulated lag on the NEW database pauses the copy, the log says why, it resumes."""
    _fake_lag(databases)
    add_listings(databases, 2000)
    legacy, new = backfill_conns
    s = backfill_settings(cfg, parallelism=1, batch_size=500, pause_check_interval=0.2,
                          throttle={"signals": {"new_replication_lag_function": "public.fake_replication_lag"}})
    plan = plan_entity(legacy, new, cfg, "listings", s)
    clear = threading.Timer(1.5, lambda: databases.query("new", "UPDATE public.fake_replica SET lag_seconds = 0.2"))
    clear.start()
    caplog.set_level("INFO", logger="migration_engine.backfill")
    lc, nc = connectors(databases)
    (job,) = [j for j in plan.jobs if j.status != "done"]
    result = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc).run()
    clear.join()
    why = "replication lag 60.0s on 1 replica(s) of the new database (> 30s)"
    assert result.status == "done" and result.paused_seconds >= 1.0
    assert result.pauses == [why]
    assert f"pausing - {why}" in caplog.text and "resuming after a pause" in caplog.text
    paused = databases.query("legacy", f"SELECT reason FROM {SCHEMA}.audit_ledger WHERE action = 'backfill_paused'")
    assert paused == [(why,)]
    assert databases.query("legacy", f"SELECT count(*) FROM {SCHEMA}.audit_ledger WHERE action = 'backfill_resumed'")
    assert compare(databases).equal


def test_backfill_with_the_controller_logs_and_ledgers_its_decisions(databases, backfill_conns, cfg, caplog):
    add_listings(databases, 3000)
    legacy, new = backfill_conns
    s = backfill_settings(cfg, parallelism=1, batch_size=500, max_batch_size=500, progress_interval=0.2,
                          ledger_progress_interval=0.3,
                          throttle={"budget": {"enabled": True, "probe_interval": 0.05, "baseline_duration": 0.2,
                                               "start_rows_per_second": 3000}})
    plan = plan_entity(legacy, new, cfg, "listings", s)
    caplog.set_level("INFO", logger="migration_engine.backfill")
    lc, nc = connectors(databases)
    (job,) = [j for j in plan.jobs if j.status != "done"]
    worker = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc)
    result = worker.run()
    assert result.status == "done" and compare(databases).equal
    assert worker.controller is not None and worker.decisions
    base = worker.controller.baseline.latency_ms
    assert base["legacy"] > 0 and base["new"] > 0  # measured on both databases before the copy
    assert "latency budget +20% over baseline" in caplog.text and "throttle: " in caplog.text
    rows = databases.query("legacy", f"SELECT details, reason FROM {SCHEMA}.audit_ledger "
                                     "WHERE action = 'backfill_throttle' ORDER BY id")
    assert rows, "no backfill_throttle ledger entry"
    details, reason = rows[-1]
    assert details["budget"] == {"max_latency_increase_pct": 20.0, "max_replication_lag_seconds": 30.0}
    assert details["action"] in ("increase", "decrease", "hold") and details["rows_per_second"] >= 200
    assert reason.split(" ")[0] in ("increase", "decrease", "hold")
    # bounded rate: at most one entry per ledger_progress_interval (+1), not one per decision (the run's
    # length varies with the machine's load: the two bounds are checked separately, not chained)
    assert len(rows) <= result.seconds / 0.3 + 1
    assert len(rows) < len(worker.decisions)
    probes = databases.query("legacy", "SELECT count(*) FROM pg_stat_activity "
                                       "WHERE application_name = 'migration-backfill-probe'")[0][0]
    assert probes == 0  # the probe's sessions are closed


def test_budget_params_map_to_the_throttle_section(cfg):
    from migration_engine.backfill.settings import BackfillError
    from migration_engine.backfill.tasks import settings_from_params

    assert settings_from_params(cfg, {}).throttle == cfg.backfill.throttle  # empty: the config's
    on = settings_from_params(cfg, {"latency_budget_pct": 20, "replica_lag_budget_seconds": 10})
    assert on.throttle.budget.enabled and on.throttle.budget.max_latency_increase_pct == 20
    assert on.throttle.budget.max_replication_lag == timedelta(seconds=10)
    assert on.throttle.budget.probe_interval == cfg.backfill.throttle.budget.probe_interval  # merged, not replaced
    assert settings_from_params(cfg, {"latency_budget_pct": 0}).throttle.budget.enabled is False
    with pytest.raises(BackfillError, match=r"latency_budget_pct must be a number >= 0 .* got -5"):
        settings_from_params(cfg, {"latency_budget_pct": -5})
    with pytest.raises(BackfillError, match=r"replica_lag_budget_seconds must be a number of seconds > 0, got 'x'"):
        settings_from_params(cfg, {"replica_lag_budget_seconds": "x"})
    stated = settings_from_params(cfg, {"latency_budget_pct": 20, "app_p95_ms": 12.5}).throttle.budget
    assert stated.app_p95_ms == 12.5 and stated.probe_allowance == "app_p95"
    assert stated.enabled and cfg.backfill.throttle.budget.probe_allowance == "relative"  # only this run
    for bad in (0, -3, "fast", True):
        with pytest.raises(BackfillError, match=r"app_p95_ms must be the application's p95 in milliseconds"):
            settings_from_params(cfg, {"latency_budget_pct": 20, "app_p95_ms": bad})


def test_cli_flags_set_the_budget(cfg):
    from migration_engine.backfill.__main__ import _settings, parse_args

    s = _settings(cfg, parse_args(["run", "--latency-budget-pct", "30", "--replica-lag-budget-seconds", "5"]))
    assert s.throttle.budget.enabled and s.throttle.budget.max_latency_increase_pct == 30
    assert s.throttle.budget.max_replication_lag == timedelta(seconds=5)
    assert _settings(cfg, parse_args(["run"])).throttle == cfg.backfill.throttle
    stated = _settings(cfg, parse_args(["run", "--latency-budget-pct", "20", "--app-p95-ms", "9"])).throttle.budget
    assert stated.app_p95_ms == 9 and stated.probe_allowance == "app_p95"


def _run_threads(workers) -> list:
    results: list = [None] * len(workers)

    def run(i):
        results[i] = workers[i].run()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return results


def _controller_row(databases, run_id):
    (row,) = databases.query("legacy", f"SELECT decisions, rows_per_second, baseline, state, baseline_by "
                                       f"FROM {SCHEMA}.backfill_controller WHERE run_id = %s", (run_id,))
    return row


def _shared_settings(cfg, **budget):
    return backfill_settings(cfg, parallelism=2, batch_size=500, max_batch_size=500,
                             throttle={"budget": {"enabled": True, "probe_interval": 0.05, "baseline_duration": 0.3,
                                                  "start_rows_per_second": 3000, **budget}})


def _controlled_pass(databases, backfill_conns, cfg, rows: int):
    """``rows`` listings and a planned pass under the controller: (settings, its unfinished range jobs)."""
    add_listings(databases, rows)
    legacy, new = backfill_conns
    s = _shared_settings(cfg)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    return s, [j for j in plan.jobs if j.status != "done"]


def _range_workers(databases, cfg, s, jobs) -> list[RangeWorker]:
    lc, nc = connectors(databases)
    return [RangeWorker(cfg, "listings", j.run_id, j.range_no, s, lc, nc, share=2) for j in jobs]


def test_parallel_ranges_share_one_baseline_measured_before_the_copy(databases, backfill_conns, cfg, caplog):
    s, jobs = _controlled_pass(databases, backfill_conns, cfg, 3000)
    caplog.set_level("INFO", logger="migration_engine.backfill")
    assert len(jobs) == 2
    workers = _range_workers(databases, cfg, s, jobs)
    results = _run_threads(workers)
    assert [r.status for r in results] == ["done", "done"] and compare(databases).equal
    a, b = (w.controller.baseline for w in workers)
    assert a == b and a.latency_ms["new"] > 0  # one measurement for the pass, not one per range
    assert caplog.text.count("measured the pass's latency baseline before the copy") == 1
    assert caplog.text.count("using the pass's baseline measured before the copy started") == 1
    assert Baseline.from_dict(_controller_row(databases, jobs[0].run_id)[2]) == a  # stored with the pass
    # a new pass measures its own
    legacy, new = backfill_conns
    plan2 = plan_entity(legacy, new, cfg, "listings", s, restart=True)
    j = next(j for j in plan2.jobs if j.status != "done")
    _range_workers(databases, cfg, s, [j])[0].run()
    assert j.run_id != jobs[0].run_id and _controller_row(databases, j.run_id)[2] is not None
    assert caplog.text.count("measured the pass's latency baseline before the copy") == 2


def _same_rate_per_decision(paced_lists, made_lists) -> None:
    """Every worker saw the same pass rate for each decision, and paced at decisions the other one made."""
    by_n: dict[int, set[float]] = {}
    for paced in paced_lists:
        for n, rate, _copying in paced:
            by_n.setdefault(n, set()).add(rate)
    assert all(len(rates) == 1 for rates in by_n.values()), by_n  # one pass rate per decision, whoever reads it
    made = [set(m) for m in made_lists]
    assert not made[0] & made[1]  # each decision made once
    assert sorted(made[0] | made[1]) == list(range(1, len(made[0]) + len(made[1]) + 1))
    # the rate is shared, not each range's own: a worker paced at a decision the other one made, or (when
    # each read found a decision due, as on a loaded machine) decided on the state the other one left
    paced_at_other = any({n for n, _r, _c in paced} & made[1 - i] for i, paced in enumerate(paced_lists))
    decided_after_other = any(n - 1 in made[1 - i] for i in (0, 1) for n in made[i])
    assert paced_at_other or decided_after_other, (paced_lists, made)


def test_two_workers_in_threads_share_one_decided_rate_and_split_it(databases, backfill_conns, cfg):
    s, jobs = _controlled_pass(databases, backfill_conns, cfg, 6000)
    workers = _range_workers(databases, cfg, s, jobs)
    results = _run_threads(workers)
    assert [r.status for r in results] == ["done", "done"] and compare(databases).equal
    decisions, rate, _baseline, state, _by = _controller_row(databases, jobs[0].run_id)
    # every decision of the pass made once, by one of the two ranges, on the one stored state
    assert decisions == sum(len(w.decisions) for w in workers) >= 2
    assert state["rate"] == rate
    _same_rate_per_decision([w.paced for w in workers], [w.made for w in workers])
    # while both copied, each paced at half the pass's rate
    assert all(any(c == 2 for _n, _r, c in w.paced) for w in workers)
    ledger = databases.query("legacy", f"SELECT details FROM {SCHEMA}.audit_ledger WHERE action = "
                                       "'backfill_throttle' ORDER BY id")
    assert ledger and sum(sum(d["decisions"].values()) for (d,) in ledger) == decisions  # each once, per pass


def test_at_most_one_decision_per_interval_per_pass(databases, backfill_conns, cfg):
    s, jobs = _controlled_pass(databases, backfill_conns, cfg, 3000)
    workers = _range_workers(databases, cfg, s, jobs)
    for w in workers:
        w.decision_interval = 3600.0  # longer than the pass: the first decision is the only one due
    results = _run_threads(workers)
    assert [r.status for r in results] == ["done", "done"]
    assert _controller_row(databases, jobs[0].run_id)[0] == 1
    assert sum(len(w.decisions) for w in workers) == 1  # the other range found it made (or lost the race)
    assert all(w.paced and w.paced[0][0] in (0, 1) for w in workers)


def test_a_range_that_finishes_gives_its_share_to_the_others(databases, backfill_conns, cfg):
    s, jobs = _controlled_pass(databases, backfill_conns, cfg, 6000)
    # range 0 resumes close to its end (one short batch left); range 1 has all of its rows to copy
    databases.query("legacy", f"UPDATE {SCHEMA}.backfill_ranges SET last_key = (key_hi::bigint - 100)::text "
                              "WHERE run_id = %s AND range_no = %s", (jobs[0].run_id, jobs[0].range_no))
    workers = _range_workers(databases, cfg, s, jobs)
    results = _run_threads(workers)
    assert [r.status for r in results] == ["done", "done"]
    short, long = workers
    assert results[0].rows_read <= 100 < results[1].rows_read
    assert short.paced and all(c == 2 for _n, _r, c in short.paced)  # both copying while it ran
    assert long.paced[-1][2] == 1  # alone after range 0 finished: the pass's whole rate


def test_two_worker_processes_see_the_same_pass_rate(databases, backfill_conns, cfg):
    """As Airflow's mapped range tasks (or two CLI processes): the rate is shared through the control schema."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    _s, jobs = _controlled_pass(databases, backfill_conns, cfg, 6000)
    script = (
        "import json, sys, psycopg2\n"
        "from migration_engine.backfill import RangeWorker, backfill_settings\n"
        "from migration_engine.config import load_config\n"
        "legacy_dsn, new_dsn, run_id, range_no = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])\n"
        "cfg = load_config()\n"
        "s = backfill_settings(cfg, parallelism=2, batch_size=500, max_batch_size=500, throttle={'budget': "
        "{'enabled': True, 'probe_interval': 0.05, 'baseline_duration': 0.3, 'start_rows_per_second': 3000}})\n"
        "w = RangeWorker(cfg, 'listings', run_id, range_no, s, lambda: psycopg2.connect(legacy_dsn), "
        "lambda: psycopg2.connect(new_dsn), share=2)\n"
        "r = w.run()\n"
        "print(json.dumps({'status': r.status, 'paced': w.paced, 'decided': len(w.decisions), 'made': w.made}))\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", script, databases.legacy_dsn, databases.new_dsn,
                               str(j.run_id), str(j.range_no)], cwd=root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for j in jobs]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=100)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o["status"] for o in outs] == ["done", "done"] and compare(databases).equal
    decisions = _controller_row(databases, jobs[0].run_id)[0]
    assert decisions == sum(o["decided"] for o in outs) >= 2
    _same_rate_per_decision([[tuple(x) for x in o["paced"]] for o in outs], [o["made"] for o in outs])


def test_a_resumed_range_reuses_the_stored_baseline_and_state(databases, backfill_conns, cfg, caplog):
    add_listings(databases, 3000)
    legacy, new = backfill_conns
    s = backfill_settings(cfg, parallelism=1, batch_size=200, max_batch_size=200,
                          throttle={"budget": {"enabled": True, "probe_interval": 0.05, "baseline_duration": 0.3,
                                               "start_rows_per_second": 2000}})
    plan = plan_entity(legacy, new, cfg, "listings", s)
    caplog.set_level("INFO", logger="migration_engine.backfill")
    lc, nc = connectors(databases)
    (job,) = [j for j in plan.jobs if j.status != "done"]
    first = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc)
    first.should_stop = lambda: len(first.paced) >= 3
    assert first.run().status == "stopped"
    decided, _rate, stored, _state, _by = _controller_row(databases, job.run_id)
    assert decided >= 1
    second = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc)
    assert second.run().status == "done" and compare(databases).equal
    assert caplog.text.count("measured the pass's latency baseline before the copy") == 1  # not measured again
    assert "using the pass's baseline measured before the copy started (by range 0)" in caplog.text
    assert second.controller.baseline == Baseline.from_dict(stored)
    assert second.paced[0][0] >= decided  # it went on from the pass's decisions, not from a fresh controller
    assert _controller_row(databases, job.run_id)[0] == decided + len(second.decisions)


def test_the_pass_decides_during_a_long_pause_at_a_low_rate_and_a_raised_rate_ends_it(databases, backfill_conns,
                                                                                       cfg):
    """At the minimum rate one batch of min_batch_size rows is a pause of seconds (500 rows at 200 rows/s:
    2.5 s); the worker reads the pass's rate every half decision interval while it sleeps, so the pass
    keeps deciding (here: slow start doubling on a calm probe) and a raised rate ends the pause early."""
    add_listings(databases, 3000)
    legacy, new = backfill_conns
    s = backfill_settings(cfg, parallelism=1, batch_size=500, min_batch_size=500, max_batch_size=500,
                          throttle={"budget": {"enabled": True, "probe_interval": 0.05, "baseline_duration": 0.3,
                                               "start_rows_per_second": 200, "min_rows_per_second": 200,
                                               "max_latency_increase_pct": 1000}})
    plan = plan_entity(legacy, new, cfg, "listings", s)
    lc, nc = connectors(databases)
    sleeps: list[float] = []
    w = RangeWorker(cfg, "listings", plan.jobs[0].run_id, plan.jobs[0].range_no, s, lc, nc,
                    sleep=lambda x: sleeps.append(x) or time.sleep(x))
    result = w.run()
    assert result.status == "done" and result.batches >= 4
    assert max(sleeps) <= 0.025 + 1e-9, max(sleeps)  # never one sleep of the whole 2.5 s pause
    assert len(w.decisions) > result.batches  # decisions while the batches' pauses lasted
    assert w.decisions[-1].rows_per_second > 200 * 4  # the raised rate ended the pauses (slow start)


def test_the_controller_state_round_trips_through_a_dict():
    c = RateController(_budget(), BASE)
    for lat in (2.0, 2.1, 5.0, 2.0):
        c.decide(Sample(latency_ms={"legacy": lat, "new": lat}))
    import json

    again = RateController.from_dict(_budget(), BASE, json.loads(json.dumps(c.to_dict())))
    assert again.to_dict() == c.to_dict() and again.cuts == 1
    s = Sample(latency_ms={"legacy": 2.0, "new": 2.0})
    assert again.decide(s) == c.decide(s)  # the next decision is the same, whoever makes it
    assert RateController.from_dict(_budget(), BASE, {}).to_dict() == RateController(_budget(), BASE).to_dict()


def _probe(databases, cfg, **budget):
    from migration_engine.backfill.probe import Probe
    from migration_engine.backfill.sqlgen import EntitySql

    b = backfill_settings(cfg, throttle={"budget": {"enabled": True, "probe_interval": 0.02,
                                                    "baseline_duration": 0.1, **budget}}).throttle.budget
    lc, nc = connectors(databases)
    es = EntitySql("listings", cfg.entities["listings"], cfg.control_schema)
    return Probe(es, b, {"legacy": lc, "new": nc}, 1, 1000, label="t")


def test_commit_probe_times_a_transactional_write_on_the_new_database_without_a_table(databases, cfg):
    tables = "SELECT count(*) FROM pg_class WHERE relnamespace NOT IN (SELECT oid FROM pg_namespace " \
             "WHERE nspname IN ('pg_catalog', 'information_schema', 'pg_toast'))"
    before_tables = databases.query("new", tables)[0][0]
    # the test clusters run with synchronous_commit off (the WAL writer flushes later), so this checks the
    # WAL the probe wrote; that its commit waits for the flush is a property of synchronous_commit
    lsn = databases.query("new", "SELECT pg_current_wal_insert_lsn()")[0][0]
    probe = _probe(databases, cfg).open()
    try:
        latency = probe.baseline()
        assert latency["new"] > 0 and probe.commit_baseline["new"] > 0
        probe.sample_once()
        assert probe.latest_commit()["new"] > 0
        probe.reset_window()  # after a cut: the window holds only what comes next
        assert probe.latest_commit() == {"new": None} and probe.latest() == {"legacy": None, "new": None}
    finally:
        probe.stop()
    # it wrote WAL - a commit record per probe - and created nothing
    written = databases.query("new", "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (lsn,))[0][0]
    assert written > 0 and databases.query("new", tables)[0][0] == before_tables
    off = _probe(databases, cfg, commit_probe=False).open()
    try:
        off.baseline()
        assert off.commit_baseline == {} and off.latest_commit() == {}
    finally:
        off.stop()


def test_a_role_that_may_not_emit_the_message_logs_once_and_keeps_the_lookup_probe(databases, cfg, caplog):
    import psycopg2

    from migration_engine.backfill.probe import Probe
    from migration_engine.backfill.sqlgen import EntitySql

    role = f"probe_{databases.new_name}"
    databases.query("new", f"""
        DROP ROLE IF EXISTS "{role}";
        CREATE ROLE "{role}" LOGIN;
        GRANT USAGE ON SCHEMA marketplace TO "{role}";
        GRANT SELECT ON marketplace.service_listings TO "{role}";
        REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) FROM PUBLIC;
    """)
    try:
        b = backfill_settings(cfg, throttle={"budget": {"enabled": True, "probe_interval": 0.02,
                                                        "baseline_duration": 0.1}}).throttle.budget
        lc, _nc = connectors(databases)
        limited = databases.new_dsn.replace("postgres@", f"{role}@")
        probe = Probe(EntitySql("listings", cfg.entities["listings"], cfg.control_schema), b,
                      {"legacy": lc, "new": lambda: psycopg2.connect(limited)}, 1, 1000, label="t").open()
        caplog.set_level("WARNING", logger="migration_engine.backfill")
        try:
            latency = probe.baseline()
            probe.sample_once()
        finally:
            probe.stop()
        assert latency["new"] > 0 and probe.commit_baseline == {"new": None}  # lookups still measured
        assert caplog.text.count("commit probe on the new database failed") == 1
        assert "permission denied for function pg_logical_emit_message" in caplog.text
    finally:
        databases.query("new", f"""
            GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO PUBLIC;
            DROP OWNED BY "{role}"; DROP ROLE "{role}";
        """)


def test_a_cut_resets_the_probe_window_unless_configured_not_to(cfg):
    class FakeProbe:
        def __init__(self, new_ms):
            self.new_ms, self.resets = new_ms, 0

        def latest(self):
            return {"legacy": 1.0, "new": self.new_ms}

        def latest_commit(self):
            return {"new": 1.0}

        def reset_window(self):
            self.resets += 1

    for reset in (True, False):
        s = backfill_settings(cfg, throttle={"budget": {"enabled": True, "reset_after_cut": reset,
                                                        "cut_interval": 1, "probe_allowance": "relative"}})
        w = RangeWorker(cfg, "listings", 1, 0, s, None, None)
        w.controller = RateController(s.throttle.budget, Baseline({"legacy": 1.0, "new": 1.0},
                                                                  commit_ms={"new": 1.0}))
        over, calm = FakeProbe(new_ms=5.0), FakeProbe(new_ms=1.0)
        assert w._decide(over, 5000).action == "decrease" and over.resets == (1 if reset else 0)
        assert w._decide(calm, 3000).action == "increase" and calm.resets == 0  # only a cut resets it
        assert [d.action for d in w.decisions] == ["decrease", "increase"]
