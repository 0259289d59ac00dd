"""Database performance view: latency derivation (pure), the sampler step on the session's real
Postgres (pg_stat_statements preloaded, see tests/conftest.py), the view model and the page."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine import control_schema
from migration_engine.config import load_config, parse_config, read_config_data
from migration_engine.perf import latency
from migration_engine.perf.latency import Interval, Statement
from migration_engine.perf.sampler import PerfSample
from migration_engine.steps import StepRunner
from tests.snapshots import snapshot, unchanged

pytestmark = pytest.mark.timeout(300)

SCHEMA = "migration_control"
OLD = "public.marketplace_listings"
NEW = "marketplace.service_listings"


def _stmt(q: str, calls: int, total: float, sd: float = 0.0, lo: float | None = None, hi: float | None = None,
          qid: int = 1) -> Statement:
    mean = total / calls
    return Statement(1, 10, qid, q, calls, total, sd, mean if lo is None else lo, mean if hi is None else hi)


# --- pure parts ------------------------------------------------------------------------------
def test_statements_are_attributed_to_the_tables_they_name():
    tables = ["public.invoices", "public.marketplace_listings", "public.marketplace_listing_images",
              "marketplace.invoices"]
    queries = [
        "SELECT * FROM public.invoices WHERE id = $1",
        'SELECT l.id FROM "public"."marketplace_listings" l JOIN marketplace_listing_images i ON i.listing_id = l.id',
        "UPDATE marketplace.invoices SET status = $1",
        "SELECT marketplace_listings_count FROM stats",  # a column that starts like a table: not a reference
        "SELECT * FROM invoices",                          # bare + ambiguous: public (the search_path default)
        latency.HIDDEN_QUERY,
    ]
    found = latency.attribute(queries, tables)
    assert found == {"public.invoices": [0, 4], "public.marketplace_listings": [1],
                     "public.marketplace_listing_images": [1], "marketplace.invoices": [2]}


def test_intervals_take_differences_and_survive_a_reset():
    a, b, c = _stmt("a", 10, 100.0, qid=1), _stmt("b", 5, 50.0, qid=2), _stmt("c", 3, 3.0, qid=3)
    prev = {a.key: (4, 40.0), b.key: (5, 50.0), c.key: (30, 300.0)}  # b idle, c reset since
    got = {iv.statement.queryid: (iv.calls, iv.total_ms) for iv in latency.intervals([a, b, c], prev)}
    assert got == {1: (6, 60.0), 3: (3, 3.0)}
    assert {iv.statement.queryid for iv in latency.intervals([a, b], {})} == {1, 2}  # first seen: cumulative


def test_mixture_percentiles_weight_statements_by_their_calls():
    fast, slow = _stmt("f", 990, 990.0), _stmt("s", 10, 1000.0, qid=2)  # 1 ms x 990, 100 ms x 10
    parts = [Interval(fast, 990, 990.0), Interval(slow, 10, 1000.0)]
    assert latency.mixture_quantile(parts, 0.50) == pytest.approx(1.0, abs=0.01)
    assert latency.mixture_quantile(parts, 0.95) == pytest.approx(1.0, abs=0.01)
    assert latency.mixture_quantile(parts, 0.995) == pytest.approx(100.0, abs=0.1)
    spread = _stmt("n", 1000, 10_000.0, sd=2.0, lo=1.0, hi=40.0)  # mean 10 ms, sd 2 ms
    one = [Interval(spread, 1000, 10_000.0)]
    assert latency.mixture_quantile(one, 0.50) == pytest.approx(10.0, abs=0.01)
    assert latency.mixture_quantile(one, 0.95) == pytest.approx(10.0 + 1.645 * 2, abs=0.02)
    assert latency.mixture_quantile([], 0.5) is None


def test_app_stats_give_a_measured_p95_per_table():
    rows = [{"entity": "listings", "path": "old", "requests": 100, "p95_ms": 12.0},
            {"entity": "listings", "path": "old", "requests": 50, "p95_ms": 30.0},
            {"entity": "listings", "path": "new", "requests": 0, "p95_ms": None}]
    got = latency.app_table_latency(rows, {("listings", "old"): OLD, ("listings", "new"): NEW})
    assert list(got) == [OLD] and (got[OLD].calls, got[OLD].p95_ms, got[OLD].p50_ms) == (150, 30.0, None)


# --- the sampler on real Postgres --------------------------------------------------------------
def _upgraded(databases):
    conn = databases.connect("legacy")
    control_schema.upgrade(conn, SCHEMA)
    conn.close()


def _traffic(databases, n: int = 30) -> None:
    for _ in range(n):
        databases.query("legacy", f"SELECT count(*) FROM {OLD} WHERE id > 5")
        databases.query("new", f"SELECT count(*) FROM {NEW} WHERE id > 5")


def _sample(databases, cfg=None, *, run_id: str = "r1", now=None, dry: bool = False):
    cfg = cfg or load_config()
    conn = databases.connect("legacy")
    try:
        runner = StepRunner(conn, schema=SCHEMA, ddl=cfg.ddl, actor="test",
                            context={"dag_id": "migration_db_performance_sampler", "run_id": run_id})
        step = PerfSample(cfg, now=now)
        return runner.plan([step])[0] if dry else runner.apply([step])[0]
    finally:
        conn.close()


def _tables(databases, db: str) -> dict[str, tuple]:
    rows = databases.query("legacy", f"SELECT table_name, calls, p50_ms, p95_ms, p99_ms, total_bytes "
                                     f"FROM {SCHEMA}.perf_table_samples WHERE db = %s "
                                     "AND sampled_at = (SELECT max(sampled_at) FROM "
                                     f"{SCHEMA}.perf_samples WHERE db = %s)", (db, db))
    return {r[0]: r[1:] for r in rows}


def test_a_sample_stores_per_table_latency_of_both_databases_once_per_run(databases):
    _upgraded(databases)
    _traffic(databases)
    result = _sample(databases)
    assert result.changed and any("latency from pg_stat_statements" in n for n in result.notes), result.notes
    samples = databases.query("legacy", f"SELECT db, database_name, latency_source, figures, unavailable "
                                        f"FROM {SCHEMA}.perf_samples ORDER BY db")
    assert [(db, name, src) for db, name, src, _f, _u in samples] == [
        ("legacy", databases.legacy_name, "pg_stat_statements"), ("new", databases.new_name, "pg_stat_statements")]
    legacy_figs = samples[0][3]
    assert legacy_figs["connections"]["cluster_clients"] >= 1 and legacy_figs["max_connections"] == 200
    assert legacy_figs["backup_dir"]["free_bytes"] > 0 and "io" in legacy_figs and "hit_rates" in legacy_figs
    assert samples[0][4] == {} and samples[1][4] == {}
    old, new = _tables(databases, "legacy")[OLD], _tables(databases, "new")[NEW]
    for calls, p50, p95, p99, size in (old, new):
        assert calls >= 30 and 0 < p50 <= p95 <= p99 and size > 0

    again = _sample(databases)  # a retried task of the same run: nothing sent
    assert not again.changed and "already sampled" in again.notes[0]
    assert databases.query("legacy", f"SELECT count(*) FROM {SCHEMA}.perf_samples") == [(2,)]
    # Telemetry, not a change: a stored sample adds nothing to the audit ledger (288 a day would
    # crowd the dashboard's recent audit list); its state is the step_state row and perf_samples.
    assert _ledger(databases, "perf.sample") == []
    assert databases.query("legacy", f"SELECT status FROM {SCHEMA}.step_state WHERE step_id = 'perf.sample'") \
        == [("applied",)]


def _ledger(databases, target: str) -> list[tuple]:
    return databases.query("legacy", f"SELECT action, reason FROM {SCHEMA}.audit_ledger WHERE target = %s "
                                     "ORDER BY id", (target,))


def test_a_failed_sample_is_still_audited(databases, monkeypatch):
    _upgraded(databases)

    def broken(self, ex, side, reading, at):
        raise RuntimeError("disk full while storing the sample")

    monkeypatch.setattr(PerfSample, "rows", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _sample(databases, run_id="r-broken")
    assert [a for a, _r in _ledger(databases, "perf.sample")] == ["step.failed"]
    assert databases.query("legacy", f"SELECT count(*) FROM {SCHEMA}.perf_samples") == [(0,)]


def test_the_next_sample_measures_only_its_interval_and_old_samples_expire(databases):
    _upgraded(databases)
    _traffic(databases, 5)
    t0 = datetime.now(UTC)
    _sample(databases, run_id="r1", now=lambda: t0)
    assert _tables(databases, "legacy")[OLD][0] >= 5
    _traffic(databases, 3)
    _sample(databases, run_id="r2", now=lambda: t0 + timedelta(minutes=5))
    assert _tables(databases, "legacy")[OLD][0] == 3  # the difference since r1, not the total
    basis = databases.query("legacy", f"SELECT figures->'latency_interval'->>'basis' FROM {SCHEMA}.perf_samples "
                                      "WHERE run_id = 'r2' AND db = 'legacy'")
    assert basis == [("since the previous sample",)]
    cfg = load_config()
    _sample(databases, run_id="r3", now=lambda: t0 + cfg.perf.retention + timedelta(minutes=1))
    runs = databases.query("legacy", f"SELECT DISTINCT run_id FROM {SCHEMA}.perf_samples ORDER BY 1")
    assert runs == [("r2",), ("r3",)]  # r1 is past perf.retention
    assert databases.query("legacy", f"SELECT count(*) FROM {SCHEMA}.perf_table_samples WHERE sampled_at = %s",
                           (t0,)) == [(0,)]


def test_a_dry_run_reads_but_writes_nothing(databases):
    _upgraded(databases)
    _traffic(databases, 3)
    before_l, before_n = snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)
    plan = _sample(databases, dry=True)
    text = "\n".join(plan.executed)
    assert 'INSERT INTO "migration_control".perf_samples' in text and "perf_statement_counters" in text
    assert unchanged(before_l, snapshot(databases.legacy_dsn)) == []
    assert unchanged(before_n, snapshot(databases.new_dsn)) == []


def test_without_pg_stat_statements_the_sample_says_why_and_uses_the_app_stats(databases):
    _upgraded(databases)
    databases.query("new", "DROP EXTENSION pg_stat_statements")
    now = datetime.now(UTC)
    databases.query("legacy", f"INSERT INTO {SCHEMA}.path_stats (entity, bucket, operation, path, requests, errors, "
                              "p95_latency_ms) VALUES ('listings', date_trunc('minute', %s::timestamptz), 'read', "
                              "'new', 500, 1, 42.5)", (now,))
    _sample(databases, now=lambda: now)
    src, why = databases.query("legacy", f"SELECT latency_source, unavailable FROM {SCHEMA}.perf_samples "
                                         "WHERE db = 'new'")[0]
    assert src == "app_stats" and "latency" not in why
    assert _tables(databases, "new")[NEW][:4] == (500, None, 42.5, None)

    cfg = parse_config({**read_config_data(), "perf": {"latency_source": "pg_stat_statements"}})
    _sample(databases, cfg, run_id="r2", now=lambda: now + timedelta(minutes=5))
    src, why = databases.query("legacy", f"SELECT latency_source, unavailable FROM {SCHEMA}.perf_samples "
                                         "WHERE db = 'new' AND run_id = 'r2'")[0]
    assert src == "none" and why["latency"].startswith(
        "not available: the pg_stat_statements extension is not installed in database")


def test_same_database_mode_samples_one_database(databases):
    _upgraded(databases)
    cfg = parse_config({**read_config_data(), "same_database": True})
    _sample(databases, cfg)
    assert databases.query("legacy", f"SELECT db FROM {SCHEMA}.perf_samples") == [("legacy",)]


def test_a_bad_interval_is_refused_naming_the_key():
    from migration_engine.errors import ConfigError

    with pytest.raises(ConfigError, match=r"perf\.interval: Value error, must be at least 1m"):
        parse_config({**read_config_data(), "perf": {"interval": "10s"}})


# --- the page: view model, HTML and the plugin's routes ------------------------------------------
@contextmanager
def _client():
    """The dashboard plugin's app as the api-server mounts it, with Airflow's login check stubbed (the
    real login is covered by tests/test_dashboard_browser.py)."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from migration_engine.airflow.plugins import MigrationDashboardPlugin

    entry = MigrationDashboardPlugin.fastapi_apps[0]
    entry["app"].app.dependency_overrides[get_user] = lambda: object()
    root = FastAPI()
    root.mount(entry["url_prefix"], entry["app"])
    with TestClient(root) as c:
        yield c


def _metrics(html: str) -> dict[str, str]:
    return {m.group(1): re.sub(r"<[^>]+>", "", m.group(2))
            for m in re.finditer(r'<span data-metric="([^"]+)">(.*?)</span>', html)}


def test_the_page_shows_per_table_p95_of_both_databases_after_queries_ran(databases):
    _upgraded(databases)
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    _traffic(databases, 10)
    _sample(databases, run_id="r1", now=lambda: t0)
    _traffic(databases, 20)
    _sample(databases, run_id="r2", now=lambda: t0 + timedelta(minutes=5))
    with _client() as c:
        resp = c.get("/migration/dashboard/performance/data")
        assert resp.status_code == 200, resp.text
        data = resp.json()
        html = c.get("/migration/dashboard/performance")
        main = c.get("/migration/dashboard")
    assert [d["db"] for d in data["databases"]] == ["legacy", "new"] and data["note"] == ""
    legacy, new = data["databases"]
    assert legacy["samples"] == 2 and legacy["latency_source"] == "pg_stat_statements"
    assert legacy["latency_basis"] == "since the previous sample"
    old = {t["table_name"]: t for t in legacy["tables"]}[OLD]
    assert old["calls"] == 20 and 0 < old["p50_ms"] <= old["p95_ms"] <= old["p99_ms"]
    assert OLD in legacy["table_series"] and len(legacy["table_series"][OLD]) == 2
    assert NEW in {t["table_name"] for t in new["tables"] if t["p95_ms"] is not None}
    assert legacy["connections"]["clients"] >= 1 and legacy["connections"]["status"] == "ok"
    assert legacy["hit_rates"]["basis"] == "since the previous sample"
    assert legacy["backup_dir"]["free_bytes"] > 0 and new["backup_dir"] is None

    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    shown = _metrics(html.text)
    assert re.fullmatch(r"[\d.,]+ ms", shown[f"legacy.table.{OLD}.p95_ms"]), shown[f"legacy.table.{OLD}.p95_ms"]
    assert re.fullmatch(r"[\d.,]+ ms", shown[f"new.table.{NEW}.p95_ms"])
    assert shown["legacy.replication_lag_seconds"] == "—" and "no replica streams from this server" in html.text
    assert "Estimated from pg_stat_statements, not measured" in html.text
    assert 'id="chart-legacy-table-p95"' in html.text and html.text.count("<svg") == 10
    assert "<script" not in html.text and "prefers-color-scheme: dark" in html.text
    assert 'href="dashboard/performance"' in main.text  # the main dashboard links here


def test_the_page_says_what_is_not_available_and_never_fails(databases):
    with _client() as c:
        resp = c.get("/migration/dashboard/performance")
        assert resp.status_code == 503 and "run the migration_setup DAG first" in resp.text
        conn = databases.connect("legacy")
        control_schema.upgrade(conn, SCHEMA, target=5)
        resp = c.get("/migration/dashboard/performance/data")
        assert resp.status_code == 503 and "no perf_samples table yet (migration 008)" in resp.json()["detail"]
        control_schema.upgrade(conn, SCHEMA)
        conn.close()
        resp = c.get("/migration/dashboard/performance")
        assert resp.status_code == 200 and "unpause the migration_db_performance_sampler DAG" in resp.text

        databases.query("new", "DROP EXTENSION pg_stat_statements")
        _sample(databases)  # no extension on the new side, no app stats either
        html = c.get("/migration/dashboard/performance").text
    assert ('data-unavailable="latency">latency: not available: the pg_stat_statements extension is not installed '
            f"in database &#x27;{databases.new_name}&#x27; (CREATE EXTENSION pg_stat_statements") in html
    assert "and the application reported no path_stats for this database&#x27;s tables in the last 5 min" in html
    assert 'data-latency-source="none"' in html and 'data-latency-source="pg_stat_statements"' in html


def test_a_role_without_pg_read_all_stats_is_told_what_to_grant(databases):
    """Least privilege: the sampler's role sees other roles' statements without their text."""
    import psycopg2

    from migration_engine.perf import collect

    _upgraded(databases)
    databases.query("legacy", "DO $$ BEGIN CREATE ROLE perf_reader LOGIN; EXCEPTION WHEN duplicate_object THEN "
                              "NULL; END $$")
    _traffic(databases, 3)  # as postgres
    conn = psycopg2.connect(databases.cluster.dsn(databases.legacy_name).replace("postgres@", "perf_reader@"))
    try:
        r = collect.read(conn, control_schema=SCHEMA, max_tables=10, statement_timeout_ms=5000)
    finally:
        conn.close()
    assert r.figures.get("statements_hidden"), (r.unavailable, r.figures, r.statements)
    assert "GRANT pg_read_all_stats TO the migration role" in r.unavailable["latency_partial"]
    assert "connections" in r.figures and r.tables  # the rest is still read


def test_a_stale_latest_sample_is_flagged():
    from migration_engine.perf import page, view

    cfg = load_config()
    now = datetime.now(UTC)
    old = now - 4 * cfg.perf.interval
    sample = {"db": "legacy", "sampled_at": old, "database_name": "breederhq", "server_version_num": 150018,
              "figures": {}, "unavailable": {}, "latency_source": "none"}
    v = view.build({"samples": [sample], "tables": [], "window_start": now - cfg.perf.chart_window}, cfg, now)
    assert v["databases"][0]["stale"] and v["missing"] == ["new"]
    html = page.render(v)
    assert "is the migration_db_performance_sampler DAG paused or failing?" in html
    assert "New database: no sample in the chart window" in html


def test_an_unreachable_database_is_sampled_as_such_and_the_other_is_kept(databases, monkeypatch):
    _upgraded(databases)
    monkeypatch.setenv("AIRFLOW_CONN_MARKETPLACE_DB", "postgresql://postgres@127.0.0.1:1/nowhere")
    result = _sample(databases)
    assert result.changed
    rows = dict(databases.query("legacy", f"SELECT db, unavailable FROM {SCHEMA}.perf_samples"))
    assert rows["legacy"] == {} and rows["new"]["connection"].startswith(
        "not available: Airflow connection 'marketplace_db'")
    with _client() as c:
        html = c.get("/migration/dashboard/performance").text
    assert 'data-unavailable="connection">connection: not available: Airflow connection' in html


def test_a_long_window_keeps_the_newest_samples_and_thins_the_charts():
    from migration_engine.perf import view

    cfg = load_config()
    now = datetime.now(UTC)
    samples = [{"db": "legacy", "sampled_at": now - timedelta(minutes=5 * i), "database_name": "b",
                "server_version_num": 150018, "figures": {}, "unavailable": {}, "latency_source": "none"}
               for i in range(1000)][::-1]
    v = view.build({"samples": samples, "tables": [], "window_start": now - timedelta(days=4)}, cfg, now)
    d = v["databases"][0]
    assert d["samples"] == 1000 and len(d["series"]) <= view.MAX_POINTS
    assert d["series"][-1]["t"] == now and d["sampled_at"] == now


def test_perf_durations_are_wall_clock_even_in_a_compressed_rehearsal():
    cfg = parse_config(read_config_data(), time_scale=0.002)
    assert (cfg.perf.interval, cfg.perf.retention, cfg.perf.chart_window) == (
        timedelta(minutes=5), timedelta(days=30), timedelta(hours=24))
    assert cfg.consistency.retention == timedelta(days=30) * 0.002  # a migration window is compressed
