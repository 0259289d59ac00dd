"""The application simulator against real Postgres: flag semantics, recorded stats, injected faults."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from devtools import demo_data
from devtools.simulator import (
    Faults,
    InjectedFault,
    ListingNotFoundError,
    ListingRef,
    MaintenanceModeError,
    MarketplaceApp,
)
from devtools.simulator_cli import Mix, run
from migration_engine import control
from migration_engine.appclient import ControlClient
from migration_engine.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Env:
    def __init__(self, dbs, legacy_dsn: str, new_dsn: str):
        self.dbs = dbs
        self.legacy_dsn = legacy_dsn
        self.new_dsn = new_dsn
        self.cfg = load_config()
        self.schema = self.cfg.control_schema
        conn = psycopg2.connect(legacy_dsn)
        control.ensure_control_schema(conn, self.schema)
        conn.close()
        self.apps: list[MarketplaceApp] = []

    def q(self, side: str, text: str, params=None):
        conn = psycopg2.connect(self.legacy_dsn if side == "legacy" else self.new_dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(text, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.commit()
            conn.close()

    def flags(self, **values) -> None:
        conn = psycopg2.connect(self.legacy_dsn)
        try:
            for name, value in values.items():
                control.set_flag(conn, self.schema, name, value, actor="test", reason="test")
        finally:
            conn.close()

    def app(self, faults: Faults | None = None, seed: int = 7) -> MarketplaceApp:
        client = ControlClient(lambda: psycopg2.connect(self.legacy_dsn), self.schema, instance="test", flag_ttl=0)
        app = MarketplaceApp(lambda: psycopg2.connect(self.legacy_dsn), lambda: psycopg2.connect(self.new_dsn),
                             self.cfg, control=client, faults=faults or Faults(), rng=random.Random(seed))
        self.apps.append(app)
        return app

    def stats(self, table: str, where: str = "true"):
        return self.q("legacy", f"SELECT * FROM {self.schema}.{table} WHERE {where}")

    def path_totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        rows = self.q("legacy", f"SELECT operation, path, sum(requests)::int, sum(errors)::int "
                                f"FROM {self.schema}.path_stats GROUP BY 1, 2")
        return {(op, path): (n, bad) for op, path, n, bad in rows}

    def dual_totals(self) -> tuple[int, int]:
        (n, bad), = self.q("legacy", f"SELECT coalesce(sum(attempts), 0)::int, coalesce(sum(failures), 0)::int "
                                     f"FROM {self.schema}.dual_write_stats")
        return n, bad


@pytest.fixture
def env(databases):
    e = Env(databases, databases.legacy_dsn, databases.new_dsn)
    yield e
    for app in e.apps:
        app.close()
        app.control.close()


def _old_count(env) -> int:
    return env.q("legacy", "SELECT count(*) FROM public.marketplace_listings")[0][0]


def _new_rows(env) -> dict[int, tuple]:
    rows = env.q("new", "SELECT legacy_listing_id, provider_id, title, description, price_cents, status, "
                        "created_at, updated_at FROM marketplace.service_listings")
    return {r[0]: r[1:] for r in rows}


def _provider(env, tenant_id: int) -> int:
    return env.q("new", "SELECT id FROM marketplace.providers WHERE tenant_id = %s", (tenant_id,))[0][0]


# -- dual-write ---------------------------------------------------------------------------------
def test_dual_write_off_writes_only_the_old_table(env):
    app = env.app()
    before = _old_count(env)
    refs = [app.create_listing(3, f"Only old {i}", price_cents=1500) for i in range(5)]
    app.control.flush()
    assert _old_count(env) == before + 5
    assert all(r.new_id is None for r in refs)
    assert _new_rows(env) == {}
    assert env.path_totals() == {("write", "old"): (5, 0)}
    assert env.dual_totals() == (0, 0)


def test_dual_write_on_writes_mapped_row(env):
    env.flags(dual_write_enabled=True)
    app = env.app()
    ref = app.create_listing(4, "Golden retriever pups", description="Two left", price_cents=250_000,
                             status="ACTIVE")
    paused = app.create_listing(5, "On hold", status="PAUSED")
    new = _new_rows(env)
    old = env.q("legacy", "SELECT tenant_id, title, description, price_cents, status, created_at, updated_at "
                          "FROM public.marketplace_listings WHERE id = %s", (ref.old_id,))[0]
    assert new[ref.old_id] == (_provider(env, 4), "Golden retriever pups", "Two left", 250_000, "active",
                               old[5], old[6])
    assert new[paused.old_id][4] == "paused"
    assert ref.new_id == env.q("new", "SELECT id FROM marketplace.service_listings WHERE legacy_listing_id = %s",
                               (ref.old_id,))[0][0]

    # An update bumps updated_at and dual-writes the whole row; a seeded listing that the backfill has
    # not copied yet is upserted (so a concurrent backfill cannot leave a stale copy behind).
    time.sleep(0.01)
    app.update_listing(ref, title="Golden retriever pups (1 left)")
    seeded = env.q("legacy", "SELECT min(id) FROM public.marketplace_listings")[0][0]
    app.update_listing(seeded, price_cents=4242)
    old_u = env.q("legacy", "SELECT title, updated_at FROM public.marketplace_listings WHERE id = %s",
                  (ref.old_id,))[0]
    new = _new_rows(env)
    assert old_u[1] > old[6]
    assert (new[ref.old_id][1], new[ref.old_id][6]) == old_u
    assert new[seeded][3] == 4242
    app.control.flush()
    assert env.dual_totals() == (4, 0)
    assert env.path_totals() == {("write", "old"): (4, 0)}


def test_dual_write_keeps_a_newer_row_like_the_backfill(env):
    """Same conflict rule as the backfill (backfill.version_column): a newer new-side row is kept."""
    env.flags(dual_write_enabled=True)
    app = env.app()
    assert app.version_column == "updated_at"
    ref = app.create_listing(2, "Versioned")
    env.q("new", "UPDATE marketplace.service_listings SET title = 'Newer', updated_at = now() + interval '1 hour' "
                 "WHERE legacy_listing_id = %s", (ref.old_id,))
    assert app.update_listing(ref, title="Older").new_id is None
    assert _new_rows(env)[ref.old_id][1] == "Newer"
    always = MarketplaceApp(app._connect["old"], app._connect["new"], env.cfg, control=app.control,
                            version_column=None)
    try:
        assert always.update_listing(ref, title="Replaced").new_id == ref.new_id
    finally:
        always.close()
    assert _new_rows(env)[ref.old_id][1] == "Replaced"
    app.control.flush()
    assert env.dual_totals() == (3, 0)


def test_injected_dual_write_failures_are_counted_and_never_fail_the_request(env):
    env.flags(dual_write_enabled=True)
    app = env.app(Faults(dual_write_failure_rate=0.4), seed=11)
    before = _old_count(env)
    refs = [app.create_listing(2, f"Flaky {i}") for i in range(40)]
    app.control.flush()
    failed = [r for r in refs if r.new_id is None]
    assert 0 < len(failed) < 40
    assert _old_count(env) == before + 40
    new = _new_rows(env)
    assert set(new) == {r.old_id for r in refs if r.new_id is not None}
    assert env.dual_totals() == (40, len(failed))
    assert env.path_totals() == {("write", "old"): (40, 0)}


def test_real_dual_write_error_is_recorded(env):
    env.flags(dual_write_enabled=True)
    env.q("new", "ALTER TABLE marketplace.service_listings ADD CONSTRAINT no_x CHECK (title <> 'x')")
    app = env.app()
    ref = app.create_listing(2, "x")
    ok = app.create_listing(2, "y")
    app.control.flush()
    assert ref.old_id is not None and ref.new_id is None and ok.new_id is not None
    assert env.dual_totals() == (2, 1)


# -- reads --------------------------------------------------------------------------------------
def _seed_listings(env, n: int) -> list[ListingRef]:
    env.flags(dual_write_enabled=True)
    app = env.app()
    refs = [app.create_listing(1 + i % 5, f"Readable {i}") for i in range(n)]
    app.control.flush()
    env.q("legacy", f"TRUNCATE {env.schema}.path_stats, {env.schema}.dual_write_stats")
    return refs


@pytest.mark.parametrize("pct, expect", [(0, {"old"}), (100, {"new"}), (50, {"old", "new"})])
def test_read_routing_by_percentage(env, pct, expect):
    refs = _seed_listings(env, 10)
    env.flags(read_new_pct=pct)
    app = env.app(seed=3)
    reads = [app.get_listing(refs[i % 10]) for i in range(60)]
    app.control.flush()
    paths = [r.path for r in reads]
    assert set(paths) == expect
    assert all(r.row is not None for r in reads)
    for r in reads:
        assert r.row["title"].startswith("Readable ")
        assert ("legacy_listing_id" in r.row) == (r.path == "new")
    totals = env.path_totals()
    assert {k: v for k, v in totals.items() if k[0] == "read"} == {
        ("read", p): (paths.count(p), 0) for p in expect}
    if pct == 50:
        assert 15 < paths.count("new") < 45


def test_injected_new_path_read_errors_are_recorded(env):
    refs = _seed_listings(env, 5)
    env.flags(read_new_pct=50)
    app = env.app(Faults(new_read_error_rate=0.5), seed=5)
    served, failed = [], 0
    for i in range(60):
        try:
            served.append(app.get_listing(refs[i % 5]).path)
        except InjectedFault:
            failed += 1
    app.control.flush()
    totals = env.path_totals()
    assert failed > 0
    assert totals[("read", "new")] == (served.count("new") + failed, failed)
    assert totals[("read", "old")] == (served.count("old"), 0)


def test_shadow_reads_find_injected_field_mismatches(env):
    env.flags(dual_write_enabled=True, shadow_read_pct=100, read_new_pct=10)
    app = env.app(Faults(field_mismatch_rate=0.5), seed=9)
    refs = [app.create_listing(2, f"Shadowed {i}") for i in range(20)]
    corrupted = {r[0] for r in env.q("new", "SELECT legacy_listing_id FROM marketplace.service_listings "
                                            "WHERE title LIKE '%%[corrupted]'")}
    assert 0 < len(corrupted) < 20
    reads = [app.get_listing(r) for r in refs]
    app.control.flush()
    assert {r.shadow.cohort for r in reads} == {"read_new_10"}
    assert {r for r, read in zip(refs, reads, strict=True) if not read.shadow.matched} == \
        {r for r in refs if r.old_id in corrupted}
    [(compared, mismatches)] = env.q("legacy", f"SELECT sum(reads_compared)::int, sum(mismatches)::int "
                                               f"FROM {env.schema}.shadow_read_stats WHERE cohort = 'read_new_10'")
    assert (compared, mismatches) == (20, len(corrupted))
    examples = env.q("legacy", f"SELECT entity, entity_key, diffs FROM {env.schema}.shadow_read_mismatches")
    assert {int(k) for _e, k, _d in examples} == corrupted
    for entity, _key, diffs in examples:
        assert entity == "listings"
        assert set(diffs) == {"title"}
        assert diffs["title"]["new"] == diffs["title"]["old"] + " [corrupted]"


def test_shadow_reads_match_clean_data_and_report_missing_rows(env):
    refs = _seed_listings(env, 5)
    env.flags(shadow_read_pct=100)
    app = env.app()
    assert all(app.get_listing(r).shadow.matched for r in refs)
    # An ACTIVE listing the new side does not have (backfill not run) is a mismatch; an
    # out-of-scope one (PAUSED, not migrated) is not compared at all.
    active, paused = env.q("legacy", "SELECT (SELECT min(id) FROM public.marketplace_listings WHERE status = 'ACTIVE'),"
                                     " (SELECT min(id) FROM public.marketplace_listings WHERE status = 'PAUSED')")[0]
    missing = app.get_listing(active)
    assert not missing.shadow.matched and missing.shadow.diffs == {"_row": {"old": "present", "new": "<missing>"}}
    assert app.get_listing(paused).shadow is None
    app.control.flush()
    assert env.q("legacy", f"SELECT sum(reads_compared)::int, sum(mismatches)::int "
                           f"FROM {env.schema}.shadow_read_stats") == [(6, 1)]


def test_simulator_reports_the_named_operations_of_the_alert_table(env):
    """Shadow reads time both sides (performance gate) and the comparison (cross-DB alert); checkout reports
    an invoice transition and a payment, failing at the injected rates."""
    env.flags(dual_write_enabled=True, shadow_read_pct=100)
    app = env.app(Faults(new_path_latency_ms=30, payment_error_rate=1.0), seed=3)
    refs = [app.create_listing(2, f"Timed {i}") for i in range(10)]
    for ref in refs:
        app.get_listing(ref)
    with pytest.raises(Exception, match="injected payment_processing error"):
        app.checkout(refs[0])
    app.control.flush()
    ops = {op: (n, bad, p95) for op, n, bad, p95 in env.q(
        "legacy", f"SELECT operation, sum(requests)::int, sum(errors)::int, max(p95_latency_ms) "
                  f"FROM {env.schema}.operation_stats GROUP BY 1")}
    assert ops["shadow_read.old"][0] == 11 and ops["shadow_read.new"][0] == 11 and ops["cross_db_query"][0] == 11
    assert ops["shadow_read.new"][2] >= 30 > ops["shadow_read.old"][2]  # the slow new side shows
    assert ops["invoice_state_transition"][:2] == (1, 0) and ops["payment_processing"][:2] == (1, 1)
    # served reads carry latency histograms (the rollout's per-interval p95)
    [(timed, requests)] = env.q("legacy", f"SELECT sum((SELECT sum(n) FROM unnest(latency_histogram) n))::int, "
                                          f"sum(requests)::int FROM {env.schema}.path_stats WHERE operation = 'read'")
    assert timed == requests == 11


# -- write cutover and maintenance --------------------------------------------------------------
def test_write_cutover_with_keep_old_sync_writes_new_first_and_links_old(env):
    env.flags(dual_write_enabled=True, read_new_pct=100, write_to_new=True, keep_old_sync=True)
    app = env.app()
    before = _old_count(env)
    ref = app.create_listing(6, "After cutover", price_cents=7777)
    assert ref.old_id is not None and ref.new_id is not None
    new = env.q("new", "SELECT id, legacy_listing_id, provider_id, title, status, created_at, updated_at "
                       "FROM marketplace.service_listings WHERE id = %s", (ref.new_id,))[0]
    old = env.q("legacy", "SELECT id, tenant_id, title, status, created_at, updated_at, price_cents "
                          "FROM public.marketplace_listings WHERE id = %s", (ref.old_id,))[0]
    assert _old_count(env) == before + 1
    assert new[1] == ref.old_id and new[2] == _provider(env, 6)
    assert old[1:6] == (6, "After cutover", "ACTIVE", new[5], new[6]) and old[6] == 7777

    app.update_listing(ref, title="Edited after cutover")
    new_u = env.q("new", "SELECT title, updated_at FROM marketplace.service_listings WHERE id = %s", (ref.new_id,))
    old_u = env.q("legacy", "SELECT title, updated_at FROM public.marketplace_listings WHERE id = %s",
                  (ref.old_id,))
    assert new_u == old_u and new_u[0][0] == "Edited after cutover" and new_u[0][1] > new[6]
    read = app.get_listing(ref)
    assert read.path == "new" and read.row["title"] == "Edited after cutover"
    app.control.flush()
    assert env.path_totals() == {("write", "new"): (2, 0), ("read", "new"): (1, 0)}
    assert env.dual_totals() == (2, 0)  # the keep_old_sync writes


def test_write_cutover_without_keep_old_sync_leaves_old_table_alone(env):
    refs = _seed_listings(env, 2)
    env.flags(read_new_pct=100, write_to_new=True, keep_old_sync=False)
    app = env.app()
    before = _old_count(env)
    ref = app.create_listing(7, "New only")
    assert ref.old_id is None
    assert env.q("new", "SELECT legacy_listing_id, title FROM marketplace.service_listings WHERE id = %s",
                 (ref.new_id,)) == [(None, "New only")]
    assert app.get_listing(ref).row["title"] == "New only"
    # An old listing is updated in the new table (found by legacy id); the old row is not touched.
    old_title = env.q("legacy", "SELECT title FROM public.marketplace_listings WHERE id = %s", (refs[0].old_id,))
    app.update_listing(refs[0].old_id, title="Changed in new only")
    assert _new_rows(env)[refs[0].old_id][1] == "Changed in new only"
    assert env.q("legacy", "SELECT title FROM public.marketplace_listings WHERE id = %s",
                 (refs[0].old_id,)) == old_title
    assert _old_count(env) == before
    with pytest.raises(ListingNotFoundError):
        app.update_listing(ListingRef(old_id=10**9), title="nope")
    app.control.flush()
    assert env.dual_totals() == (0, 0)
    assert env.path_totals()[("write", "new")] == (3, 0)


def test_keep_old_sync_failures_are_warnings(env):
    env.flags(write_to_new=True, keep_old_sync=True)
    app = env.app(Faults(dual_write_failure_rate=1.0))
    before = _old_count(env)
    ref = app.create_listing(2, "Sync fails")
    app.control.flush()
    assert ref.new_id is not None and ref.old_id is None
    assert _old_count(env) == before
    assert env.dual_totals() == (1, 1)
    assert env.path_totals() == {("write", "new"): (1, 0)}


def test_maintenance_mode_refuses_writes_but_serves_reads(env):
    refs = _seed_listings(env, 1)
    env.flags(maintenance_mode=True)
    app = env.app()
    before = _old_count(env)
    with pytest.raises(MaintenanceModeError):
        app.create_listing(2, "Refused")
    with pytest.raises(MaintenanceModeError):
        app.update_listing(refs[0], title="Refused")
    assert _old_count(env) == before
    assert app.get_listing(refs[0]).row["title"] == "Readable 0"
    env.flags(maintenance_mode=False)
    assert app.update_listing(refs[0], title="Allowed").old_id == refs[0].old_id


def test_faults_are_validated(env):
    with pytest.raises(ValueError):
        Faults(dual_write_failure_rate=1.5)
    with pytest.raises(ValueError):
        env.app(Faults(field_mismatch_rate=0.1, mismatch_column="no_such_column"))
    with pytest.raises(ValueError):
        env.app().create({"no_such_column": 1})


def test_same_database_mode(pg_cluster):
    name = "simulator_same_db"
    pg_cluster.create_database(name, drop_existing=True)
    dsn = pg_cluster.dsn(name)
    demo_data.build(dsn, dsn, listings=100)
    env = Env(None, dsn, dsn)
    env.flags(dual_write_enabled=True, read_new_pct=100, shadow_read_pct=100)
    app = env.app()
    try:
        ref = app.create_listing(1, "Same database")
        read = app.get_listing(ref)
        assert read.path == "new" and read.row["legacy_listing_id"] == ref.old_id and read.shadow.matched
    finally:
        app.close()
        app.control.close()


# -- load loop and CLI --------------------------------------------------------------------------
def test_run_loop_is_paced_bounded_and_flushes(env):
    env.flags(dual_write_enabled=True, read_new_pct=50, shadow_read_pct=50)
    app = env.app(Faults(dual_write_failure_rate=0.1))
    started = time.monotonic()
    stats = run(app, duration_s=1.5, rate_per_s=60, mix=Mix(create=1, update=1, read=2), flush_every_s=0.5,
                rng=random.Random(1))
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 4
    total = sum(stats.requests.values())
    assert 60 <= total <= 100 and set(stats.requests) == {"create", "update", "read"}
    assert sum(stats.errors.values()) == 0
    totals = env.path_totals()
    assert sum(n for (op, _p), (n, _e) in totals.items() if op == "write") == \
        stats.requests["create"] + stats.requests["update"]
    assert sum(n for (op, _p), (n, _e) in totals.items() if op == "read") == stats.requests["read"]
    attempts, failures = env.dual_totals()
    assert attempts == stats.requests["create"] + stats.requests["update"] and 0 < failures < attempts


def test_run_loop_stops_on_event(env):
    app = env.app()
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    stats = run(app, duration_s=0, rate_per_s=20, stop=stop)
    assert time.monotonic() - started < 3 and sum(stats.requests.values()) > 0


def test_cli_runs_in_background_and_stops_cleanly_on_sigterm(env):
    env.flags(dual_write_enabled=True, shadow_read_pct=100)
    cmd = [sys.executable, "-m", "devtools.simulator", "--legacy-dsn", env.legacy_dsn,
           "--new-dsn", env.new_dsn, "--rate", "40", "--duration", "0", "--flush-interval", "0.5",
           "--dual-write-failure-rate", "0.2", "--instance", "cli", "--seed", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped after" in out
    rows = env.q("legacy", f"SELECT operation, path, requests FROM {env.schema}.path_stats WHERE instance = 'cli'")
    assert {(op, path) for op, path, _n in rows} == {("write", "old"), ("read", "old")}
    assert sum(n for *_k, n in rows) >= 40
    (attempts, failures), = env.q("legacy", f"SELECT sum(attempts)::int, sum(failures)::int "
                                            f"FROM {env.schema}.dual_write_stats WHERE instance = 'cli'")
    assert attempts > 0 and 0 < failures < attempts
    assert env.q("legacy", f"SELECT sum(reads_compared) > 0 FROM {env.schema}.shadow_read_stats "
                           f"WHERE instance = 'cli'") == [(True,)]


def test_cli_rejects_bad_arguments(env):
    proc = subprocess.run([sys.executable, "-m", "devtools.simulator", "--legacy-dsn", env.legacy_dsn,
                           "--dual-write-failure-rate", "2"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "dual_write_failure_rate" in proc.stderr
