"""Pacing of phase 1's batched updates and of the repair's batches (issue 16) against the real Postgres.

The latency signal is simulated with a fake probe (``FakeProbe``: a latency the test raises after a
few readings), the replica lag with a lag function on the legacy database reading a table the test
sets; the real probe (``LookupProbe``) is run once against the phase-1 table.
"""

from __future__ import annotations

import copy
import re
import threading

import psycopg2
import pytest
import yaml

from migration_engine import phase1, steps
from migration_engine.config import DEFAULT_CONFIG_PATH, Ddl, parse_config
from migration_engine.consistency.step import ConsistencyRun
from migration_engine.ddl import DdlExecutor
from migration_engine.errors import ConfigError, VerificationError
from migration_engine.pacing import Pacer
from migration_engine.repair import RepairRun
from tests.backfill_fixtures import compare
from tests.consistency_fixtures import config_dict
from tests.phase1_fixtures import legacy_conn

SCHEMA = "migration_control"
pytestmark = pytest.mark.timeout(180)


def _config(base: dict | None = None, **sections) -> object:
    data = copy.deepcopy(base or yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    for path, value in sections.items():
        node = data
        *parents, last = path.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return parse_config(data)


class FakeProbe:
    """A latency signal the test controls: ``base`` ms for the baseline and the first ``calm`` readings,
    then ``high`` ms."""

    def __init__(self, sides=("legacy",), base=1.0, high=3.0, calm=3):
        self.sides, self.base, self.high, self.calm = sides, base, high, calm
        self.reads = 0
        self.keys: dict[str, list] = {s: [] for s in sides}
        self.opened = self.started = self.stopped = False

    def open(self):
        self.opened = True
        return self

    def baseline(self, sleep):
        return {s: self.base for s in self.sides}

    def start(self):
        self.started = True
        return self

    def latest(self):
        self.reads += 1
        return {s: self.base if self.reads <= self.calm else self.high for s in self.sides}

    def add_keys(self, side, keys):
        self.keys[side] += list(keys)

    def stop(self):
        self.stopped = True


FAST_BUDGET = {"enabled": False, "probe_interval": "1ms", "signal_samples": 1, "start_rows_per_second": 5000,
               "min_rows_per_second": 200}


def _phase1_ready(databases, cfg, tenants: int) -> None:
    """Step 1.1 applied (the column exists, NULL) and ``tenants`` more tenants to fill."""
    with legacy_conn(databases) as conn:
        phase1.prepare(conn, cfg)
        phase1.apply_group(conn, cfg, "1.1", actor="test")
    databases.query("legacy", "INSERT INTO public.tenants (name) SELECT 'paced ' || g FROM generate_series(1, %s) g",
                    (tenants,))


def _ledger(databases, action: str) -> list[tuple]:
    return databases.query("legacy", f"SELECT details, reason, target FROM {SCHEMA}.audit_ledger "
                                     "WHERE action = %s ORDER BY id", (action,))


def _nulls(databases) -> int:
    return databases.query("legacy", "SELECT count(*) FROM public.tenants WHERE marketplace_payment_mode IS NULL")[0][0]


def test_phase1_batches_slow_down_when_the_probe_latency_crosses_the_budget(databases, caplog):
    cfg = _config(ddl__update_batch_size=100, backfill__ledger_progress_interval="1h",
                  backfill__throttle={"budget": FAST_BUDGET}, pacing={"phase1": {"controller": True}})
    _phase1_ready(databases, cfg, 1500)
    probe = FakeProbe()
    (spec,) = cfg.schema_changes.required
    step = phase1.SetRequiredStep(spec, 0, cfg.ddl.update_batch_size,
                                  pacing=phase1.pacer_factory(cfg, probe=lambda s, key: probe))
    slept: list[float] = []
    made: list[Pacer] = []
    factory = step.pacing
    step.pacing = lambda ex, s, key: made.append(factory(ex, s, key)) or made[-1]
    caplog.set_level("INFO", logger="migration_engine.pacing")
    with legacy_conn(databases) as conn:
        ex = DdlExecutor(conn, cfg.ddl, sleep=slept.append)
        notes = step.apply(ex)
    assert any(n.startswith("backfilled ") for n in notes) and _nulls(databases) == 0
    (pacer,) = made
    assert pacer.stats.batches >= 15 and any(
        n.startswith(f"paced: {pacer.stats.batches} batch(es), slept ") for n in notes), notes
    actions = [d.action for d in pacer.stats.decisions]
    # calm readings: the rate grows; over budget (3 ms > 1.2 ms): it is cut, down to the floor
    assert actions[:3] == ["increase"] * 3 and "decrease" in actions[3:], actions
    assert pacer.stats.decisions[-1].rows_per_second < 5000
    assert pacer.stats.decisions[-1].signal == "legacy probe latency"
    # the sleeps between batches lengthen once the controller cuts (the batches are paced by it)
    assert max(slept[-3:]) > max(slept[:3]) > 0
    assert probe.opened and probe.started and probe.stopped and probe.keys["legacy"]  # batch keys reach the probe
    assert "public.tenants.marketplace_payment_mode: throttle: decrease to" in caplog.text
    assert "legacy probe latency 3.00 ms (budget 1.20 ms" in caplog.text
    rows = _ledger(databases, "phase1_backfill_throttle")
    # bounded: one entry per ledger_progress_interval (1h here) plus the last decision at the end
    assert len(rows) == 2 < len(pacer.stats.decisions)
    details, reason, target = rows[-1]
    assert target == "public.tenants.marketplace_payment_mode"
    assert "rows/s: legacy probe latency 3.00 ms (budget 1.20 ms" in reason  # the last decision, at the floor
    assert details["decisions"]["decrease"] >= 1 and details["baseline"]["latency_ms"] == {"legacy": 1.0}
    assert details["budget"] == {"max_latency_increase_pct": 20.0, "max_replication_lag_seconds": 30.0}


def _legacy_lag(databases, seconds: float) -> None:
    databases.query("legacy", f"""
        CREATE TABLE IF NOT EXISTS public.fake_replica (lag_seconds float8);
        DELETE FROM public.fake_replica;
        INSERT INTO public.fake_replica VALUES ({seconds});
        CREATE OR REPLACE FUNCTION public.fake_replication_lag(OUT replicas bigint, OUT lag_seconds float8)
            LANGUAGE sql AS 'SELECT 1::bigint, lag_seconds FROM public.fake_replica';
    """)


def test_replica_lag_on_the_legacy_database_pauses_phase1_batches_until_it_clears(databases, caplog):
    """The real path (phase1.apply_group, the default pacing): a simulated lag pauses, the log and the
    ledger say why, the batches resume when it clears and the column is filled and NOT NULL."""
    cfg = _config(ddl__update_batch_size=200, backfill__pause_check_interval="200ms",
                  backfill__throttle={"signals": {"legacy_replication_lag_function": "public.fake_replication_lag"}})
    _phase1_ready(databases, cfg, 1000)
    _legacy_lag(databases, 60)
    clear = threading.Timer(1.5, lambda: databases.query("legacy", "UPDATE public.fake_replica SET lag_seconds = 0.2"))
    clear.start()
    caplog.set_level("INFO", logger="migration_engine.pacing")
    try:
        with legacy_conn(databases) as conn:
            phase1.apply_group(conn, cfg, "1.3", actor="test")
    finally:
        clear.join()
    why = "replication lag 60.0s on 1 replica(s) (> 30s)"
    assert f"public.tenants.marketplace_payment_mode: pausing - {why}" in caplog.text
    assert "resuming after a pause of" in caplog.text
    ((details, reason, target),) = _ledger(databases, "phase1_backfill_paused")
    assert reason == why and details["reasons"] == [why] and target == "public.tenants.marketplace_payment_mode"
    ((resumed, _r, _t),) = _ledger(databases, "phase1_backfill_resumed")
    assert resumed["paused_seconds"] >= 1.0
    assert _nulls(databases) == 0
    assert databases.query("legacy", "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'public.tenants'::regclass "
                                     "AND attname = 'marketplace_payment_mode'") == [(True,)]


def test_the_real_probe_measures_the_phase1_table_and_the_cap_holds_without_controller(databases):
    cfg = _config(ddl__update_batch_size=100,
                  backfill__throttle={"budget": {**FAST_BUDGET, "probe_interval": "50ms",
                                                 "baseline_duration": "200ms"}},
                  pacing={"phase1": {"controller": True}})
    _phase1_ready(databases, cfg, 500)
    with legacy_conn(databases) as conn:
        phase1.apply_group(conn, cfg, "1.3", actor="test")
    details, _reason, _target = _ledger(databases, "phase1_backfill_throttle")[0]
    assert details["baseline"]["latency_ms"]["legacy"] > 0  # measured on the table before the first batch
    assert not databases.query("legacy", "SELECT pid FROM pg_stat_activity WHERE application_name = 'zdm-pacing-probe'")

    # without the controller, pacing.phase1.max_rows_per_second alone paces the batches
    capped = _config(pacing={"phase1": {"max_rows_per_second": 1000}})
    slept: list[float] = []
    with legacy_conn(databases) as conn:
        pacer = Pacer(capped, capped.pacing.phase1, action="t", target="t", legacy=conn,
                      tables={"legacy": ("public", "tenants")}, sleep=slept.append).start()
        pacer.pace(100)
        pacer.pace(100)
        pacer.close()
    assert pacer.controller is None and len(slept) == 2 and all(0 < s <= 0.1 for s in slept)


def test_pacing_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"pacing\.phase1\.max_rows_per_second"):
        _config(pacing={"phase1": {"max_rows_per_second": -5}})
    with pytest.raises(ConfigError, match=r"pacing\.repair\.speed"):
        _config(pacing={"repair": {"speed": 3}})
    cfg = _config()
    assert cfg.pacing.phase1.controller is None and cfg.pacing.repair.health_pause  # defaults


def pacer_rate(rows) -> float:
    return rows[-1][0]["rows_per_second"]


# --- repair ---------------------------------------------------------------------------------------
def _connect(dbs):
    return {"legacy": lambda: psycopg2.connect(dbs.legacy_dsn), "new": lambda: psycopg2.connect(dbs.new_dsn)}


def test_repair_batches_slow_down_when_the_probe_latency_crosses_the_budget(consistent, caplog):
    dbs = consistent
    data = config_dict()
    budget = {**FAST_BUDGET, "start_rows_per_second": 100, "min_rows_per_second": 1}
    cfg = _config(data, backfill__ledger_progress_interval="1h", backfill__throttle={"budget": budget},
                  pacing={"repair": {"controller": True}})
    tampered = [r[0] for r in dbs.query("new", "UPDATE marketplace.service_listings SET title = 'tampered' "
                                               "WHERE legacy_listing_id IN (SELECT legacy_listing_id FROM "
                                               "marketplace.service_listings ORDER BY 1 LIMIT 40) "
                                               "RETURNING legacy_listing_id")]
    conn = dbs.connect("legacy")
    try:
        def runner(n):
            return steps.StepRunner(conn, schema=SCHEMA, ddl=Ddl(), actor="test:repair",
                                    context={"dag_id": "t", "run_id": f"r{n}", "task_id": "t"})
        r = runner(1)
        diff = ConsistencyRun(cfg, "diff", phase="phase3", connect=_connect(dbs))
        r.apply([diff])
        run_pk = diff.current(r.executor(planning=True)).id
        with pytest.raises(VerificationError):
            r.verify([diff])
        probes: list[FakeProbe] = []
        slept: list[float] = []
        repair = RepairRun(cfg, run_pk, connect=_connect(dbs), sleep=slept.append, batch_size=5,
                           probe=lambda es: probes.append(FakeProbe(("legacy", "new"), calm=2)) or probes[-1])
        caplog.set_level("INFO", logger="migration_engine.pacing")
        r2 = runner(2)
        (applied,) = r2.apply([repair])
        assert "listings: insert 0, re-copy 40, delete 0, already equal 0" in applied.notes
        paced = list(slept)
        assert any(n.startswith("listings: paced 8 batch(es), slept ") for n in applied.notes), applied.notes
        r2.verify([repair])
    finally:
        conn.close()
    assert compare(dbs).equal
    (probe,) = probes
    assert probe.stopped and set(probe.keys["new"]) == set(tampered)  # the probe looks up the keys repaired
    assert "listings: throttle: decrease to" in caplog.text
    rows = _ledger(dbs, "repair_throttle")
    assert len(rows) == 2  # bounded: the first decision and the last
    details, reason, target = rows[-1]
    assert target == "listings" and " probe latency 3.00 ms" in reason and details["consistency_run"] == run_pk
    assert details["decisions"]["decrease"] >= 1
    assert details["signal"] in ("legacy probe latency", "new probe latency")
    assert details["baseline"]["latency_ms"] == {"legacy": 1.0, "new": 1.0}
    # 8 batches of 5 rows: after the cuts the rate is a few rows/s, so the last batches wait (how long
    # depends on how long each batch took on this machine: no duration asserted)
    assert all(s > 0 for s in paced[-2:]) and pacer_rate(rows) < 100


def test_replica_lag_on_the_new_database_pauses_the_repair_until_it_clears(consistent, caplog):
    dbs = consistent
    cfg = _config(config_dict(), backfill__pause_check_interval="200ms",
                  backfill__throttle={"signals": {"new_replication_lag_function": "public.fake_replication_lag"}})
    dbs.query("new", "UPDATE marketplace.service_listings SET title = 'tampered' WHERE legacy_listing_id IN "
                     "(SELECT legacy_listing_id FROM marketplace.service_listings ORDER BY 1 LIMIT 3)")
    conn = dbs.connect("legacy")
    try:
        r = steps.StepRunner(conn, schema=SCHEMA, ddl=Ddl(), actor="test:repair",
                             context={"dag_id": "t", "run_id": "r1", "task_id": "t"})
        diff = ConsistencyRun(cfg, "diff", phase="phase3", connect=_connect(dbs))
        r.apply([diff])
        run_pk = diff.current(r.executor(planning=True)).id
        dbs.query("new", """
            CREATE TABLE public.fake_replica (lag_seconds float8);
            INSERT INTO public.fake_replica VALUES (60);
            CREATE FUNCTION public.fake_replication_lag(OUT replicas bigint, OUT lag_seconds float8)
                LANGUAGE sql AS 'SELECT 1::bigint, lag_seconds FROM public.fake_replica';
        """)
        clear = threading.Timer(1.5, lambda: dbs.query("new", "UPDATE public.fake_replica SET lag_seconds = 0.2"))
        clear.start()
        caplog.set_level("INFO", logger="migration_engine.pacing")
        repair = RepairRun(cfg, run_pk, connect=_connect(dbs))
        try:
            r2 = steps.StepRunner(conn, schema=SCHEMA, ddl=Ddl(), actor="test:repair",
                                  context={"dag_id": "t", "run_id": "r2", "task_id": "t"})
            (applied,) = r2.apply([repair])
            r2.verify([repair])
        finally:
            clear.join()
    finally:
        conn.close()
    why = "replication lag 60.0s on 1 replica(s) of the new database (> 30s)"
    assert f"listings: pausing - {why}" in caplog.text and "resuming after a pause of" in caplog.text
    ((details, reason, target),) = _ledger(dbs, "repair_paused")
    assert reason == why and target == "listings" and details["consistency_run"] == run_pk
    ((resumed, _r, _t),) = _ledger(dbs, "repair_resumed")
    assert resumed["paused_seconds"] >= 1.0
    (note,) = [n for n in applied.notes if n.startswith("listings: paced ")]
    m = re.search(r"paced 1 batch\(es\), slept [\d.]+s, paused (\d+\.\d)s", note)
    assert m and float(m.group(1)) >= 1.0, note
    assert compare(dbs).equal
