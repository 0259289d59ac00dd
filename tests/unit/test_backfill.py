"""The backfill engine against real Postgres: plan, kill -9 and resume, concurrent dual-writes, throttle."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from migration_engine import control
from migration_engine.backfill import BackfillError, RangeBusyError, RangeWorker, backfill_settings, plan_entity, store
from migration_engine.backfill.throttle import Health, next_batch_size, paced_batch_size, pause_reasons, rate_sleep
from migration_engine.config import load_config, parse_config
from tests.backfill_fixtures import add_listings, compare, connectors

SCHEMA = "migration_control"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cfg():
    return load_config()


@pytest.fixture
def conns(backfill_conns):
    return backfill_conns


def _run_all(databases, cfg, s, plan, **kw):
    lc, nc = connectors(databases)
    return [RangeWorker(cfg, plan.entity, j.run_id, j.range_no, s, lc, nc, **kw).run() for j in plan.jobs
            if j.status != "done"]


def _ledger(databases, action):
    return databases.query("legacy", f"SELECT target, details, reason FROM {SCHEMA}.audit_ledger "
                                     "WHERE action = %s ORDER BY id", (action,))


def test_plan_ranges_cover_the_key_space_and_dry_run_changes_nothing(databases, conns, cfg):
    legacy, new = conns
    add_listings(databases, 20_000)
    s = backfill_settings(cfg, parallelism=4)
    plan = plan_entity(legacy, new, cfg, "listings", s, dry_run=True)
    (in_scope,) = databases.query("legacy", "SELECT count(*) FROM public.marketplace_listings "
                                            "WHERE status = 'ACTIVE'")[0]
    jobs = plan.jobs
    assert len(jobs) == 4 and plan.rows_total == in_scope == sum(j.rows_total for j in jobs)
    assert jobs[0].key_lo == plan.key_min - 1 and jobs[-1].key_hi == plan.key_max
    assert all(a.key_hi == b.key_lo for a, b in zip(jobs, jobs[1:], strict=False))  # contiguous, no overlap
    assert max(j.rows_total for j in jobs) - min(j.rows_total for j in jobs) <= 2  # quantile cuts: balanced
    text = "\n".join(plan.sql.values())
    assert "COPY (" in text and "ON CONFLICT (\"legacy_listing_id\") DO UPDATE" in text
    assert 'OR src."id" > ' in text and "OFFSET" not in text and "'ACTIVE'" in text
    # nothing was written: no pass recorded, no rows copied, no ledger entry
    # (the backfill tables exist from the start now: control-schema migration 003, applied by migration_setup)
    assert databases.query("legacy", "SELECT (SELECT count(*) FROM migration_control.backfill_runs), "
                                     "(SELECT count(*) FROM migration_control.backfill_ranges), "
                                     "(SELECT count(*) FROM migration_control.audit_ledger)")[0] == (0, 0, 0)
    assert databases.query("new", "SELECT count(*) FROM marketplace.service_listings")[0][0] == 0


def test_bad_mapping_and_settings_are_clear_errors(databases, conns, cfg):
    legacy, new = conns
    raw = yaml.safe_load((ROOT / "include" / "migration.yaml").read_text())
    raw["entities"]["listings"]["scope"] = None  # every status is in scope ...
    databases.query("legacy", "UPDATE public.marketplace_listings SET status = 'DRAFT' WHERE id = 5")
    everything = parse_config(raw)
    with pytest.raises(BackfillError, match=r"column status -> status: \['DRAFT'\] not in map"):
        plan_entity(legacy, new, everything, "listings", backfill_settings(everything))
    with pytest.raises(BackfillError, match="version_column 'touched_at' is not a mapped column"):
        plan_entity(legacy, new, cfg, "listings", backfill_settings(cfg, version_column="touched_at"))
    with pytest.raises(BackfillError, match="entity 'invoices' is not in the migration config"):
        plan_entity(legacy, new, cfg, "invoices", backfill_settings(cfg))
    with pytest.raises(BackfillError, match="min_batch_size 10 > max_batch_size 5"):
        backfill_settings(cfg, min_batch_size=10, max_batch_size=5)
    assert backfill_settings(cfg, batch_size=100).min_batch_size == 100  # an explicit small batch is honoured


def test_newer_version_wins_and_reruns_are_no_ops(databases, conns, cfg):
    """A dual-written newer row is kept; a stale one is repaired; a second pass writes nothing."""
    legacy, new = conns
    (a, b) = [r[0] for r in databases.query("legacy", "SELECT id FROM public.marketplace_listings "
                                                      "WHERE status = 'ACTIVE' ORDER BY id LIMIT 2")]
    # a: the application already dual-wrote a NEWER version; b: the new side holds a STALE version
    databases.query("new", """
        INSERT INTO marketplace.service_listings (legacy_listing_id, title, price_cents, status, updated_at)
        VALUES (%s, 'dual-written newer', 1, 'active', now() + interval '1 hour'),
               (%s, 'stale', 1, 'active', '2000-01-01')""", (a, b))
    s = backfill_settings(cfg, batch_size=500)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    results = _run_all(databases, cfg, s, plan)
    assert all(r.status == "done" for r in results)
    rows = dict(databases.query("new", "SELECT legacy_listing_id, title FROM marketplace.service_listings "
                                       "WHERE legacy_listing_id IN (%s, %s)", (a, b)))
    assert rows[a] == "dual-written newer" and rows[b] != "stale"
    c = compare(databases)
    assert c.different == [a] and not (c.missing or c.duplicates or c.orphans), c  # only the newer one differs
    assert sum(r.rows_written for r in results) == c.in_scope - 1

    again = plan_entity(legacy, new, cfg, "listings", s)  # previous pass is closed? not yet: resumes
    assert again.resumed and all(j.status == "done" for j in again.jobs)
    from migration_engine.backfill import finish_run

    assert finish_run(legacy, SCHEMA, plan.run_id)["status"] == "done"
    fresh = plan_entity(legacy, new, cfg, "listings", s)
    assert not fresh.resumed and fresh.run_id != plan.run_id
    assert sum(r.rows_written for r in _run_all(databases, cfg, s, fresh)) == 0  # idempotent


def _progress(databases, run_id):
    rows = databases.query("legacy", f"SELECT coalesce(sum(rows_read), 0), count(*) FILTER (WHERE status = 'done'), "
                                     f"count(*) FROM {SCHEMA}.backfill_ranges WHERE run_id = %s", (run_id,))
    return rows[0] if rows else (0, 0, 0)


def _cli(databases, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "migration_engine.backfill", "run", "--legacy-dsn", databases.legacy_dsn,
         "--new-dsn", databases.new_dsn, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def _wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def _active_backfill_statement(databases, dbname):
    rows = databases.query("legacy", "SELECT query FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                                     "AND application_name LIKE 'migration-backfill%%'", (dbname,))
    return rows[0][0] if rows else None


def test_backfill_survives_sigkill_three_times(databases, conns, cfg):
    legacy, new = conns
    add_listings(databases, 150_000)
    s = backfill_settings(cfg, parallelism=2)
    run_id = plan_entity(legacy, new, cfg, "listings", s).run_id
    total = databases.query("legacy", f"SELECT rows_total FROM {SCHEMA}.backfill_runs WHERE id = %s", (run_id,))[0][0]
    args = ["--workers", "2", "--batch-size", "2000", "--max-batch-size", "2000", "--max-rows-per-second", "40000"]
    rng = random.Random(os.getpid())
    kills = []
    # kill 1 while a batch is being written, kill 2 while one is being read, kill 3 at a random moment
    for how in ("during a write (new db)", "during a read (legacy db)", "at a random moment"):
        before = _progress(databases, run_id)[0]
        proc = _cli(databases, *args)
        try:
            _wait_until(lambda before=before: _progress(databases, run_id)[0] > before, 30,
                        "the backfill to make progress")
            if how.startswith("during a write"):
                stmt = _wait_until(lambda: (q := _active_backfill_statement(databases, databases.new_name))
                                   and ("INSERT" in q or "COPY" in q) and q, 10, "a batch write on the new database")
            elif how.startswith("during a read"):
                stmt = _wait_until(lambda: (q := _active_backfill_statement(databases, databases.legacy_name))
                                   and "COPY" in q and q, 10, "a batch read on the legacy database")
            else:
                time.sleep(rng.uniform(0.0, 0.4))
                stmt = None
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        done, ranges_done, ranges = _progress(databases, run_id)
        assert proc.returncode == -signal.SIGKILL and ranges_done < ranges, "the run finished before the kill"
        code = [ln for ln in (stmt or "").splitlines() if ln.strip() and not ln.lstrip().startswith("--")]
        kills.append((how, int(done), code[0].strip()[:60] if code else ""))
    print("kills (when, rows copied at the kill, statement running):", kills)
    resumed = _cli(databases, *args)
    out, err = resumed.communicate(timeout=90)
    assert resumed.returncode == 0, err[-3000:]
    report = json.loads(out)["entities"]["listings"]
    assert report["resumed"] and report["pass"]["status"] == "done", report
    c = compare(databases)
    assert c.equal and c.in_scope == total == c.new_rows, (c, kills)
    assert len({k[1] for k in kills}) == 3, kills  # each kill landed at a different point of the copy
    started = _ledger(databases, "backfill_range_started")
    assert sum(1 for _t, d, reason in started if reason == "resumed from checkpoint") >= 3, started


def test_backfill_while_the_application_dual_writes(databases, conns, cfg):
    """The simulator updates, creates and re-statuses rows (dual-writing them) during the copy."""
    from devtools.simulator import MarketplaceApp
    from migration_engine.appclient import ControlClient

    legacy, new = conns
    add_listings(databases, 30_000)
    control.set_flag(legacy, SCHEMA, "dual_write_enabled", True, actor="test", reason="phase 2 starts")
    lc, nc = connectors(databases)
    s = backfill_settings(cfg, parallelism=2, batch_size=1000, max_batch_size=1000, max_rows_per_second=6000)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    keys = [r[0] for r in databases.query("legacy", "SELECT id FROM public.marketplace_listings ORDER BY id")]
    stop = threading.Event()
    counts = {"updates": 0, "creates": 0, "status": 0, "errors": 0}

    def application():
        app = MarketplaceApp(lc, nc, cfg, control=ControlClient(lc, SCHEMA, flag_ttl=0.5), rng=random.Random(7))
        rng = random.Random(11)
        try:
            while not stop.is_set():
                # aim at the rows the backfill is copying right now, half of the time
                marks = [r[0] for r in databases.query(
                    "legacy", f"SELECT last_key::bigint FROM {SCHEMA}.backfill_ranges WHERE run_id = %s",
                    (plan.run_id,))]
                key = rng.choice(marks) + rng.randint(-500, 1500) if marks and rng.random() < 0.5 else rng.choice(keys)
                try:
                    roll = rng.random()
                    if roll < 0.1:
                        app.create_listing(1 + rng.randrange(10), "created during backfill")
                        counts["creates"] += 1
                    elif roll < 0.25:
                        app.update_listing(key, status=rng.choice(["ACTIVE", "PAUSED", "SOLD"]))
                        counts["status"] += 1
                    else:
                        app.update_listing(key, title=f"edited {rng.random():.6f}", price_cents=rng.randint(1, 10**6))
                        counts["updates"] += 1
                except Exception:  # noqa: BLE001 - e.g. a key past the end; the app keeps going
                    counts["errors"] += 1
        finally:
            app.close()

    writer = threading.Thread(target=application)
    writer.start()
    try:
        results = _run_all(databases, cfg, s, plan)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert all(r.status == "done" for r in results)
    assert counts["updates"] > 50 and counts["status"] > 10 and counts["creates"] > 5, counts
    # rows the application dual-wrote first were found in place and not overwritten
    assert sum(r.rows_written for r in results) < sum(r.rows_read for r in results)
    c = compare(databases)
    assert c.equal, (c, counts)
    assert c.new_rows >= c.in_scope  # plus the rows the app moved out of scope (dual-written too)


class _DeletingWorker(RangeWorker):
    """Deletes an old row right after its batch was read: the application's delete racing the copy."""

    victims: list[int] = []

    def _read(self, legacy, after, hi, size, **kw):
        batch = super()._read(legacy, after, hi, size, **kw)
        if batch.data and not self.victims:
            key = int(batch.data.split(b"\n", 1)[0].split(b"\t", 1)[0])
            with legacy.cursor() as cur:
                cur.execute("DELETE FROM public.marketplace_listing_images WHERE listing_id = %s", (key,))
                cur.execute("DELETE FROM public.marketplace_listings WHERE id = %s", (key,))
            legacy.commit()
            self.victims.append(key)
        return batch


def test_rows_deleted_during_the_copy_do_not_come_back(databases, conns, cfg):
    legacy, new = conns
    s = backfill_settings(cfg, parallelism=1)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    lc, nc = connectors(databases)
    (job,) = plan.jobs
    result = _DeletingWorker(cfg, "listings", job.run_id, 0, s, lc, nc).run()
    assert result.rows_deleted == 1 and _DeletingWorker.victims
    assert compare(databases).equal


def test_health_pause_is_logged_and_resumes(databases, conns, cfg, caplog):
    legacy, new = conns
    s = backfill_settings(cfg, parallelism=1, pause_when={"max_lock_waits": 0}, pause_check_interval=0.2,
                          batch_size=500)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    databases.query("legacy", "CREATE TABLE public.lock_probe (id int)")
    holder = databases.connect("legacy")
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE public.lock_probe IN ACCESS EXCLUSIVE MODE")  # held until rollback
    waiter = threading.Thread(target=lambda: databases.query("legacy", "SELECT count(*) FROM public.lock_probe"))
    waiter.start()
    _wait_until(lambda: databases.query("legacy", "SELECT count(*) FROM pg_stat_activity "
                                                  "WHERE wait_event_type = 'Lock'")[0][0] >= 1, 10, "a lock wait")
    threading.Timer(1.5, holder.rollback).start()
    caplog.set_level("INFO", logger="migration_engine.backfill")
    (result,) = _run_all(databases, cfg, s, plan)
    waiter.join(timeout=10)
    holder.close()
    assert result.status == "done" and result.paused_seconds >= 0.5
    assert result.pauses == ["1 sessions wait for locks on the legacy database (> 0)"]
    assert "pausing - 1 sessions wait for locks" in caplog.text and "resuming after a pause" in caplog.text
    (paused,) = _ledger(databases, "backfill_paused")
    assert paused[2] == "1 sessions wait for locks on the legacy database (> 0)"
    assert _ledger(databases, "backfill_resumed")
    assert compare(databases).equal


def test_one_worker_per_range(databases, conns, cfg):
    legacy, new = conns
    s = backfill_settings(cfg, parallelism=1)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    holder = databases.connect("legacy")
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"backfill:{plan.run_id}:0",))
    lc, nc = connectors(databases)
    with pytest.raises(RangeBusyError, match="being copied by another worker"):
        RangeWorker(cfg, "listings", plan.run_id, 0, s, lc, nc, lock_wait_seconds=0.3).run()
    holder.close()
    assert store.get_range(legacy, SCHEMA, plan.run_id, 0).status == "pending"


def test_settings_are_the_config_section_with_validated_overrides(cfg):
    """One declaration: a run's settings are cfg.backfill, overrides re-validated by the same model."""
    from datetime import timedelta

    from migration_engine.backfill import BackfillSettingsError, with_overrides
    from migration_engine.errors import ConfigError

    assert backfill_settings(cfg) is cfg.backfill  # nothing overridden: the config's own section
    assert backfill_settings(cfg, batch_size=None, parallelism=None) is cfg.backfill  # None = keep the config's
    s = backfill_settings(cfg, parallelism=4, pause_check_interval="200ms", pause_when={"max_lock_waits": 0})
    assert (s.parallelism, s.pause_check_interval) == (4, timedelta(milliseconds=200))
    assert s.pause_when.max_lock_waits == 0
    assert s.pause_when.max_active_connections == cfg.backfill.pause_when.max_active_connections  # merged
    assert cfg.backfill.parallelism == 2  # the config's section is untouched
    wide = backfill_settings(cfg, batch_size=100_000)  # above max_batch_size: widens it
    assert (wide.max_batch_size, wide.initial_batch_size()) == (100_000, 100_000)
    assert with_overrides(wide, batch_size=7).min_batch_size == 7
    with pytest.raises(BackfillSettingsError,
                       match=r"unknown backfill setting\(s\) \['batch'\]; known: \[.*'batch_size'"):
        backfill_settings(cfg, batch=10)
    with pytest.raises(ConfigError, match=r"backfill\.parallelism: Input should be less than or equal to 64 \(got 65"):
        backfill_settings(cfg, parallelism=65)
    with pytest.raises(BackfillError, match=r"backfill\.pause_check_interval: .*expected a duration"):
        backfill_settings(cfg, pause_check_interval="soon")
    with pytest.raises(BackfillError, match=r"backfill\.pause_when\.colour: unknown key"):
        backfill_settings(cfg, pause_when={"colour": 1})
    with pytest.raises(BackfillError, match=r"need min_batch_size <= batch_size <= max_batch_size, got 600 <= 550"):
        backfill_settings(cfg, batch_size=550, min_batch_size=600)  # both explicit: no widening


def test_throttle_rules(cfg):
    s = backfill_settings(cfg)  # target 1 s, batches 500..50 000
    assert next_batch_size(5000, 0.25, s) == 10_000  # fast: grow, at most x2
    assert next_batch_size(5000, 4.0, s) == 2500  # slow: shrink, at most /2
    assert next_batch_size(5000, 1.25, s) == 4000
    assert next_batch_size(600, 10.0, s) == 500 and next_batch_size(40_000, 0.1, s) == 50_000  # bounds
    capped = backfill_settings(cfg, max_rows_per_second=10_000)
    assert rate_sleep(5000, 0.1, capped, share=1) == pytest.approx(0.4)  # 5000 rows at 10k/s = 0.5 s
    assert rate_sleep(5000, 0.1, capped, share=2) == pytest.approx(0.9)  # two ranges share the cap
    assert rate_sleep(5000, 0.1, s, share=1) == 0.0  # no cap
    calm = Health(3, 0, 2, 0, 0, None, 40.0)
    assert pause_reasons(calm, s) == []
    busy = Health(200, 12, 3, 0, 1, 45.0, 900.0)
    assert pause_reasons(busy, s) == [
        "legacy database has 200 active connections (> 150)",
        "12 sessions wait for locks on the legacy database (> 10)",
        "replication lag 45.0s on 1 replica(s) (> 30s)",
        "application p95 latency 900 ms over the last 300s (> 500 ms)",
    ]


def test_rate_cap_slows_the_copy(databases, conns, cfg):
    legacy, new = conns
    s = backfill_settings(cfg, parallelism=1, batch_size=200, max_batch_size=200, max_rows_per_second=2000)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    started = time.monotonic()
    (result,) = _run_all(databases, cfg, s, plan)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.8 * result.rows_read / 2000, (elapsed, result.rows_read)  # sleeps enforce the cap
    assert result.rows_per_second <= 2000 * 1.2


def test_a_capped_copy_runs_small_batches_at_an_even_pace_not_full_speed_bursts(databases, conns, cfg):
    """Under max_rows_per_second a batch holds at most pace_slice worth of rows at the worker's share of
    the cap (a batch of target_batch_duration at full speed then a long sleep is a burst of the uncapped
    copy that the application's tail latency sees); without a cap the adaptive sizing is untouched."""
    legacy, new = conns
    add_listings(databases, 20_000)
    (in_scope,) = databases.query("legacy", "SELECT count(*) FROM public.marketplace_listings "
                                            "WHERE status = 'ACTIVE'")[0]
    paced = backfill_settings(cfg, parallelism=1, max_rows_per_second=20_000, pace_slice="100ms")
    (result,) = _run_all(databases, cfg, paced, plan_entity(legacy, new, cfg, "listings", paced, restart=True))
    assert result.status == "done" and result.rows_read == in_scope
    assert result.final_batch_size <= 2000  # 100 ms of 20 000 rows/s (the first batch too: batch_size is 5000)
    assert result.batches >= in_scope // 2000, (result.batches, in_scope)
    assert compare(databases).equal
    unpaced = backfill_settings(cfg, parallelism=1, max_rows_per_second=20_000, pace_slice="60s")
    (bursty,) = _run_all(databases, cfg, unpaced, plan_entity(legacy, new, cfg, "listings", unpaced, restart=True))
    assert bursty.batches < result.batches // 2, (bursty.batches, result.batches)  # 5000, then the adaptive size
    s = backfill_settings(cfg)
    assert paced_batch_size(50_000, None, s) == 50_000  # no rate: adaptive size only
    assert paced_batch_size(50_000, 4000, s) == 1000  # 250 ms of 4000 rows/s
    assert paced_batch_size(50_000, 100, s) == s.min_batch_size  # never below the adaptive floor


def test_a_new_pass_deletes_ghosts_of_rows_deleted_or_moved_out_of_scope_after_their_copy(databases, conns, cfg):
    """The issue's measurement: after a pass, an old row is deleted and another is SOLD without the
    dual-write reaching the new table; a restarted pass used to leave both. The ghost sweep removes
    them (and only them: a row out of scope on both sides stays)."""
    legacy, new = conns
    add_listings(databases, 3000)
    s = backfill_settings(cfg, parallelism=2, batch_size=500)
    assert all(r.status == "done" for r in _run_all(databases, cfg, s, plan_entity(legacy, new, cfg, "listings", s)))
    assert compare(databases).equal
    active = [r[0] for r in databases.query("legacy", "SELECT id FROM public.marketplace_listings "
                                                      "WHERE status = 'ACTIVE' ORDER BY id")]
    deleted, sold, sold_both = active[5], active[len(active) // 2], active[-4]
    databases.query("legacy", "DELETE FROM public.marketplace_listing_images WHERE listing_id = %s", (deleted,))
    databases.query("legacy", "DELETE FROM public.marketplace_listings WHERE id = %s", (deleted,))
    databases.query("legacy", "UPDATE public.marketplace_listings SET status = 'SOLD' WHERE id IN (%s, %s)",
                    (sold, sold_both))
    # the application did dual-write this one: the new row is 'sold' too, and must stay
    databases.query("new", "UPDATE marketplace.service_listings SET status = 'sold' WHERE legacy_listing_id = %s",
                    (sold_both,))
    before = compare(databases)
    assert deleted in before.orphans and sold in before.different
    new_before = dict(databases.query("new", "SELECT legacy_listing_id, md5(t::text) "
                                             "FROM marketplace.service_listings AS t"))

    plan = plan_entity(legacy, new, cfg, "listings", s, restart=True)
    results = _run_all(databases, cfg, s, plan)
    assert sum(r.rows_deleted for r in results) == 2
    c = compare(databases)
    new_after = dict(databases.query("new", "SELECT legacy_listing_id, md5(t::text) "
                                            "FROM marketplace.service_listings AS t"))
    assert deleted not in new_after and sold not in new_after and sold_both in new_after
    assert c.equal, str(c)  # sold_both: out of scope on both sides, equal (the application's row, kept)
    assert new_after == {k: v for k, v in new_before.items() if k not in (deleted, sold)}  # nothing else touched
    entries = _ledger(databases, "backfill_ghosts_deleted")
    assert sorted(k for _t, d, _r in entries for k in d["deleted_old_rows"]) == [deleted]
    assert sorted(k for _t, d, _r in entries for k in d["out_of_scope_old_rows"]) == [sold]


@pytest.mark.parametrize("direct_copy", [True, False], ids=["direct-copy", "staged-plain-insert"])
def test_a_dual_write_between_the_range_probe_and_the_plain_insert_is_settled_by_the_version_rule(
        databases, conns, cfg, monkeypatch, caplog, direct_copy):
    """A first pass writes each batch with a COPY straight into the target (direct path) or a plain
    INSERT from the stage when its key range holds no new rows yet. A dual-write that lands a row of
    that range right after the probe fails the COPY / plain INSERT on the unique legacy id; the batch
    is redone with the upsert at once: the newer dual-written row stays, every other row is copied,
    nothing is counted as a retry."""
    from migration_engine.backfill import engine

    legacy, new = conns
    add_listings(databases, 1000)
    active = [r[0] for r in databases.query("legacy", "SELECT id FROM public.marketplace_listings "
                                                      "WHERE status = 'ACTIVE' ORDER BY id")]
    racer = active[250]  # inside the second batch of 200
    real_run = engine.sqlfiles.run
    probes: list[bool] = []

    def run(cur, name, *args, **kwargs):
        out = real_run(cur, name, *args, **kwargs)
        if name == "backfill/range_occupied.sql":
            probes.append(True)
            if len(probes) == 2:  # the second batch: the probe saw an empty range, now a dual-write lands
                databases.query("new", """
                    INSERT INTO marketplace.service_listings (legacy_listing_id, title, price_cents, status, updated_at)
                    VALUES (%s, 'dual-written newer', 1, 'active', now() + interval '1 hour')""", (racer,))
        return out

    monkeypatch.setattr(engine.sqlfiles, "run", run)
    s = backfill_settings(cfg, parallelism=1, batch_size=200, min_batch_size=200, max_batch_size=200,
                          direct_copy=direct_copy)
    caplog.set_level("INFO", logger="migration_engine.backfill.engine")
    (result,) = _run_all(databases, cfg, s, plan_entity(legacy, new, cfg, "listings", s))
    assert result.status == "done" and result.retries == 0, result
    fast, slow = ("copy", "resolved_upsert") if direct_copy else ("insert", "upsert")
    assert result.write_paths == {fast: result.write_paths[fast], "filled_meanwhile": 1, slow: 1}, result.write_paths
    assert any("filled meanwhile" in r.getMessage() and "upsert" in r.getMessage() for r in caplog.records)
    (title,) = databases.query("new", "SELECT title FROM marketplace.service_listings WHERE legacy_listing_id = %s",
                               (racer,))[0]
    assert title == "dual-written newer"  # the plain INSERT never overwrote it, the upsert's version rule kept it
    c = compare(databases)
    assert c.different == [racer] and not (c.missing or c.duplicates or c.orphans), c
    assert result.rows_written == c.in_scope - 1


def test_a_first_pass_skips_the_ghost_sweep_but_a_range_holding_new_rows_is_swept(databases, conns, cfg, monkeypatch):
    """The sweep looks for new rows that were in the batch's range before it: a range the probe found
    empty has none, so the sweep is skipped there; where new rows exist (a ghost), it runs and deletes it."""
    from migration_engine.backfill import engine

    legacy, new = conns
    add_listings(databases, 1000)
    active = [r[0] for r in databases.query("legacy", "SELECT id FROM public.marketplace_listings "
                                                      "WHERE status = 'ACTIVE' ORDER BY id")]
    sweeps: list[tuple] = []
    real_sweep = engine.RangeWorker._sweep

    def sweep(self, legacy_conn, new_conn, data, after, last):
        sweeps.append((after, last))
        return real_sweep(self, legacy_conn, new_conn, data, after, last)

    monkeypatch.setattr(engine.RangeWorker, "_sweep", sweep)
    s = backfill_settings(cfg, parallelism=1, batch_size=200, min_batch_size=200, max_batch_size=200)
    (result,) = _run_all(databases, cfg, s, plan_entity(legacy, new, cfg, "listings", s))
    assert result.status == "done" and result.batches >= 4 and sweeps == [], (result, sweeps)
    assert set(result.write_paths) == {"copy"}, result.write_paths  # every range empty: the direct COPY

    # a ghost: a new row whose old row was deleted without the dual-write reaching the new table
    ghost = active[450]
    databases.query("legacy", "DELETE FROM public.marketplace_listing_images WHERE listing_id = %s", (ghost,))
    databases.query("legacy", "DELETE FROM public.marketplace_listings WHERE id = %s", (ghost,))
    (result,) = _run_all(databases, cfg, s, plan_entity(legacy, new, cfg, "listings", s, restart=True))
    assert result.rows_deleted == 1 and len(sweeps) == result.batches, (result, sweeps)
    assert set(result.write_paths) == {"resolved_upsert"}, result.write_paths  # rows there: the version rule
    assert compare(databases).equal
