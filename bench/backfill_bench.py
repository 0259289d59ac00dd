"""Backfill benchmark: the seed's sync job vs this project's engine vs the practical limit.

    .venv/bin/python bench/backfill_bench.py [--listings 1000000] [--seed-sample 20000] [--json out.json]

Starts its own throwaway PostgreSQL cluster (devtools.pgcluster), seeds the demo databases
(devtools.demo_data.build: ~70 % of the listings are ACTIVE, i.e. in scope), and measures,
in one run, rows/s of:

  (a) the seed's method without its 1 s sleep: OFFSET pages of 100 ACTIVE listings, per row an
      existence check, a provider lookup and an INSERT (autocommit, like the Prisma calls). Measured
      on a sample (half at the start, half at the middle of the OFFSET range - OFFSET cost grows
      linearly, so the middle is the whole run's average) and extrapolated;
  (b) ours: migration_engine.backfill (plan + parallel ranges, default config, no rate cap), while
      a simulated application (devtools.simulator: reads, updates, creates with dual-write)
      runs at a fixed request rate; its p95 is compared with the same load without the backfill;
  (c) the practical limit, the best of: one COPY pipe of the mapped rows from the legacy database
      straight into the (emptied) target table in the new one, and one INSERT ... SELECT (with the
      provider join) into the same table structure inside a single database.

(b') repeats (b) the way an operator throttles on a busy primary (one range, a rows/s cap) to show
the latency/throughput trade-off. Prints the numbers and the ratios (targets: b >= 100x a,
b >= 50 % of c, p95 within +20 %).
Timings depend on the machine and on what else runs on it: this prints, it never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devtools import demo_data  # noqa: E402
from devtools.pgcluster import PgCluster, free_port  # noqa: E402
from devtools.simulator import MarketplaceApp  # noqa: E402
from devtools.simulator_cli import Mix, Workload  # noqa: E402
from migration_engine import control  # noqa: E402
from migration_engine.appclient import ControlClient  # noqa: E402
from migration_engine.backfill import RangeWorker, backfill_settings, plan_entity  # noqa: E402
from migration_engine.config import load_config  # noqa: E402

SCHEMA = "migration_control"

# --- (a) the seed's syncHistoricalListings, statement for statement (bench code, not product code)
SEED_PAGE = ("SELECT id, tenant_id, title, description, price_cents, status, created_at, updated_at "
             "FROM public.marketplace_listings WHERE status = 'ACTIVE' ORDER BY id LIMIT 100 OFFSET %s")
SEED_EXISTS = "SELECT id FROM marketplace.service_listings WHERE legacy_listing_id = %s LIMIT 1"
SEED_PROVIDER = "SELECT id FROM marketplace.providers WHERE tenant_id = %s LIMIT 1"
SEED_INSERT = ("INSERT INTO marketplace.service_listings (legacy_listing_id, provider_id, title, description, "
               "price_cents, status, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
STATUS_MAP = {"ACTIVE": "active", "PAUSED": "paused", "SOLD": "sold", "ARCHIVED": "archived"}

# --- (c) the practical limit, into the real target table (same indexes, FK, identity), emptied first.
# The COPY pipe cannot join: it writes tenant_id as provider_id, which the demo data makes valid
# (provider ids follow tenant ids); the single-database INSERT does the real join.
LIMIT_EMPTY = "TRUNCATE marketplace.service_listings"
LIMIT_COPY_OUT = ("COPY (SELECT id, tenant_id, title, description, price_cents, "
                  "CASE status WHEN 'ACTIVE' THEN 'active' END, created_at, updated_at "
                  "FROM public.marketplace_listings WHERE status = 'ACTIVE') TO STDOUT")
LIMIT_COPY_IN = ("COPY marketplace.service_listings (legacy_listing_id, provider_id, title, description, "
                 "price_cents, status, created_at, updated_at) FROM STDIN")
SINGLE_DB_INSERT = """
INSERT INTO marketplace.service_listings (legacy_listing_id, provider_id, title, description, price_cents,
                                          status, created_at, updated_at)
SELECT l.id, p.id, l.title, l.description, l.price_cents, 'active', l.created_at, l.updated_at
FROM public.marketplace_listings AS l LEFT JOIN marketplace.providers AS p ON p.tenant_id = l.tenant_id
WHERE l.status = 'ACTIVE'
ON CONFLICT (legacy_listing_id) DO NOTHING
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def q(dsn: str, sql: str, params=None):
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else None
        conn.commit()
        return rows
    finally:
        conn.close()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(0.95 * len(ordered)) - 1)] if ordered else float("nan")


# --- (a) ----------------------------------------------------------------------------------------
def seed_method(legacy_dsn: str, new_dsn: str, *, start_offset: int, rows: int) -> float:
    """rows/s of the seed's loop (no sleep) copying ``rows`` rows from ``start_offset``."""
    legacy, new = psycopg2.connect(legacy_dsn), psycopg2.connect(new_dsn)
    legacy.autocommit = new.autocommit = True  # every Prisma call is its own statement/transaction
    done, offset = 0, start_offset
    started = time.perf_counter()
    with legacy.cursor() as lc, new.cursor() as nc:
        while done < rows:
            lc.execute(SEED_PAGE, (offset,))
            page = lc.fetchall()
            if not page:
                break
            for (lid, tenant, title, desc, price, status, created, updated) in page:
                nc.execute(SEED_EXISTS, (lid,))
                if nc.fetchone() is None:
                    nc.execute(SEED_PROVIDER, (tenant,))
                    provider = nc.fetchone()
                    nc.execute(SEED_INSERT, (lid, provider[0] if provider else None, title, desc, price,
                                             STATUS_MAP[status], created, updated))
                done += 1
            offset += 100
    elapsed = time.perf_counter() - started
    legacy.close()
    new.close()
    return done / elapsed


# --- application load ------------------------------------------------------------------------
class AppLoad:
    """The simulator at a fixed request rate; client-side latency of every request."""

    def __init__(self, legacy_dsn: str, new_dsn: str, cfg, rate: float, seed: int = 1) -> None:
        def lc():
            return psycopg2.connect(legacy_dsn)

        def nc():
            return psycopg2.connect(new_dsn)

        self.control = ControlClient(lc, SCHEMA, instance="bench", flag_ttl=5)
        self.app = MarketplaceApp(lc, nc, cfg, control=self.control, rng=random.Random(seed))
        self.work = Workload(self.app, random.Random(seed), pool_size=5000)
        self.work.load()
        self.mix = Mix(create=1, update=2, read=7)
        self.rate = rate
        self.rng = random.Random(seed)

    def run(self, stop: threading.Event) -> list[float]:
        latencies: list[float] = []
        interval = 1.0 / self.rate
        next_at = time.perf_counter()
        last_flush = next_at
        while not stop.is_set():
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)
                continue
            next_at += interval
            t0 = time.perf_counter()
            try:
                self.work.step(self.mix.pick(self.rng))
            except Exception:  # noqa: BLE001 - count it as slow rather than drop it
                pass
            latencies.append((time.perf_counter() - t0) * 1000)
            if t0 - last_flush > 2:
                self.control.flush()
                last_flush = t0
        self.control.flush()
        return latencies

    def measure_for(self, seconds: float) -> list[float]:
        stop = threading.Event()
        threading.Timer(seconds, stop.set).start()
        return self.run(stop)

    def close(self) -> None:
        self.app.close()
        self.control.close()


# --- (b) ---------------------------------------------------------------------------------------
def ours(legacy_dsn: str, new_dsn: str, cfg, parallelism: int, max_rows_per_second: int = 0
         ) -> tuple[float, float, list]:
    legacy, new = psycopg2.connect(legacy_dsn), psycopg2.connect(new_dsn)
    s = backfill_settings(cfg, parallelism=parallelism, max_rows_per_second=max_rows_per_second)
    started = time.perf_counter()
    plan = plan_entity(legacy, new, cfg, "listings", s, restart=True, actor="bench")
    legacy.close()
    new.close()
    results = [None] * len(plan.jobs)

    def work(i, job):
        results[i] = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lambda: psycopg2.connect(legacy_dsn),
                                 lambda: psycopg2.connect(new_dsn), share=len(plan.jobs), actor="bench").run()

    threads = [threading.Thread(target=work, args=(i, j)) for i, j in enumerate(plan.jobs)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    elapsed = time.perf_counter() - started
    rows = sum(r.rows_read for r in results)
    return rows / elapsed, elapsed, results


# --- (c) ---------------------------------------------------------------------------------------
def copy_pipe(legacy_dsn: str, new_dsn: str) -> tuple[float, int]:
    q(new_dsn, LIMIT_EMPTY)
    legacy, new = psycopg2.connect(legacy_dsn), psycopg2.connect(new_dsn)
    r, w = os.pipe()
    reader, writer = os.fdopen(r, "rb"), os.fdopen(w, "wb")
    errors: list[BaseException] = []

    def produce():
        try:
            with legacy.cursor() as cur:
                cur.copy_expert(LIMIT_COPY_OUT, writer)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            writer.close()

    started = time.perf_counter()
    t = threading.Thread(target=produce)
    t.start()
    with new.cursor() as cur:
        cur.copy_expert(LIMIT_COPY_IN, reader)
    new.commit()
    t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    (rows,) = q(new_dsn, "SELECT count(*) FROM marketplace.service_listings")[0]
    legacy.close()
    new.close()
    return rows / elapsed, rows


def single_db_insert(legacy_dsn: str) -> tuple[float, int]:
    """Both sides in one database (the config's same_database mode): one INSERT ... SELECT."""
    conn = psycopg2.connect(legacy_dsn)
    demo_data.create_new_schema(conn)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO marketplace.providers (tenant_id, display_name) "
                    "SELECT id, name FROM public.tenants ON CONFLICT DO NOTHING")
        cur.execute(LIMIT_EMPTY)
        cur.execute("ANALYZE marketplace.providers")
    conn.commit()
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(SINGLE_DB_INSERT)
        rows = cur.rowcount
    conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return rows / elapsed, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listings", type=int, default=1_000_000)
    ap.add_argument("--seed-sample", type=int, default=20_000, help="rows of the seed's method to time")
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--app-rate", type=float, default=50.0, help="simulated application requests/s")
    ap.add_argument("--baseline-seconds", type=float, default=15.0)
    ap.add_argument("--throttled-fraction", type=float, default=0.25,
                    help="(b') caps one range at this fraction of (b)'s rate")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running (prints its DSNs)")
    args = ap.parse_args(argv)
    cfg = load_config()

    workdir = Path(tempfile.mkdtemp(prefix="zdm-bench-"))
    os.chmod(workdir, 0o755)
    cluster = PgCluster(workdir / "pgdata", free_port())
    log(f"starting a throwaway PostgreSQL cluster in {workdir}")
    cluster.start()
    out: dict = {"listings": args.listings}
    try:
        for name in ("breederhq", "marketplace"):
            cluster.create_database(name, drop_existing=True)
        legacy_dsn, new_dsn = cluster.dsn("breederhq"), cluster.dsn("marketplace")
        t0 = time.perf_counter()
        counts = demo_data.build(legacy_dsn, new_dsn, listings=args.listings)
        conn = psycopg2.connect(legacy_dsn)
        control.ensure_control_schema(conn, SCHEMA)
        control.set_flag(conn, SCHEMA, "dual_write_enabled", True, actor="bench", reason="benchmark")
        conn.close()
        in_scope = counts["active_listings"]
        log(f"seeded {counts['listings']:,} listings ({in_scope:,} ACTIVE = in scope) "
            f"in {time.perf_counter() - t0:.1f}s")
        out["in_scope_rows"] = in_scope

        # (a) seed method, sampled at the start and in the middle of the OFFSET range
        half = args.seed_sample // 2
        a_start = seed_method(legacy_dsn, new_dsn, start_offset=0, rows=half)
        a_mid = seed_method(legacy_dsn, new_dsn, start_offset=in_scope // 2, rows=half)
        a = a_mid  # OFFSET cost is linear in the offset: the middle is the run's average
        log(f"(a) seed method, no sleep: {a_start:,.0f} rows/s at offset 0, {a_mid:,.0f} rows/s at offset "
            f"{in_scope // 2:,} -> {a:,.0f} rows/s average, {in_scope / a / 3600:.1f} h for {in_scope:,} rows "
            f"(with its 1 s sleep per page: {in_scope / 100 / 3600:.1f} h more)")
        out.update(seed_rows_per_s_offset0=a_start, seed_rows_per_s_mid=a_mid, seed_rows_per_s=a)
        q(new_dsn, "TRUNCATE marketplace.service_listings")

        # baseline application p95, then (b) with the same load running
        app = AppLoad(legacy_dsn, new_dsn, cfg, args.app_rate)
        app.measure_for(2)  # warm-up
        base = app.measure_for(args.baseline_seconds)
        log(f"application alone: {len(base)} requests, p50 {statistics.median(base):.2f} ms, "
            f"p95 {p95(base):.2f} ms")

        def with_load(**kw):
            stop = threading.Event()
            lat: list[float] = []
            load = threading.Thread(target=lambda: lat.extend(app.run(stop)))
            load.start()
            try:
                return (*ours(legacy_dsn, new_dsn, cfg, **kw), lat)
            finally:
                stop.set()
                load.join()

        b, b_secs, results, during = with_load(parallelism=args.parallelism)
        log(f"(b) ours: {b:,.0f} rows/s ({sum(r.rows_read for r in results):,} rows in {b_secs:.1f}s, "
            f"{args.parallelism} ranges, batches {sum(r.batches for r in results)}, final batch sizes "
            f"{[r.final_batch_size for r in results]}, pauses {sum(len(r.pauses) for r in results)})")
        log(f"application during (b): {len(during)} requests, p50 {statistics.median(during):.2f} ms, "
            f"p95 {p95(during):.2f} ms")
        (copied,) = q(new_dsn, "SELECT count(*) FROM marketplace.service_listings")[0]
        (active,) = q(legacy_dsn, "SELECT count(*) FROM public.marketplace_listings WHERE status = 'ACTIVE'")[0]
        log(f"check: {copied:,} rows in the new table, {active:,} ACTIVE in the old one now "
            "(the simulated app keeps creating and dual-writing rows)")
        out.update(ours_rows_per_s=b, ours_seconds=b_secs, app_p95_baseline_ms=p95(base),
                   app_p95_during_ms=p95(during), app_requests_baseline=len(base), app_requests_during=len(during))

        # (b') the same copy throttled the way an operator would on a busy primary: one range, a cap
        q(new_dsn, "TRUNCATE marketplace.service_listings")
        cap = int(b * args.throttled_fraction)
        bt, bt_secs, _r, during_t = with_load(parallelism=1, max_rows_per_second=cap)
        app.close()
        log(f"(b') ours, 1 range capped at {cap:,} rows/s: {bt:,.0f} rows/s in {bt_secs:.1f}s; application "
            f"p95 {p95(during_t):.2f} ms ({len(during_t)} requests)")
        out.update(throttled_cap=cap, throttled_rows_per_s=bt, app_p95_during_throttled_ms=p95(during_t))

        # (c) practical limits
        c_pipe, n_pipe = copy_pipe(legacy_dsn, new_dsn)
        log(f"(c1) one COPY pipe legacy -> new (same indexes, no lookup): {c_pipe:,.0f} rows/s ({n_pipe:,} rows)")
        c_one, n_one = single_db_insert(legacy_dsn)
        log(f"(c2) one INSERT ... SELECT with the provider join in a single database: {c_one:,.0f} rows/s "
            f"({n_one:,} rows)")
        c = max(c_pipe, c_one)
        out.update(copy_pipe_rows_per_s=c_pipe, single_db_insert_rows_per_s=c_one, limit_rows_per_s=c)

        ratio_ba, ratio_bc = b / a, b / c
        p95_change = (p95(during) / p95(base) - 1) * 100
        out.update(ratio_ours_vs_seed=ratio_ba, ratio_ours_vs_limit=ratio_bc, app_p95_change_pct=p95_change)
        print()
        print(f"=== backfill of {in_scope:,} in-scope listings (of {args.listings:,}) ===")
        print(f"  (a) seed method, no sleep   {a:>12,.0f} rows/s")
        print(f"  (b) ours                    {b:>12,.0f} rows/s")
        print(f"  (c) practical limit         {c:>12,.0f} rows/s  "
              f"(COPY pipe {c_pipe:,.0f}, single-DB INSERT {c_one:,.0f})")
        print(f"  b / a = {ratio_ba:,.0f}x   (target >= 100x)   {'OK' if ratio_ba >= 100 else 'MISSED'}")
        print(f"  b / c = {ratio_bc:.0%}     (target >= 50 %)   {'OK' if ratio_bc >= 0.5 else 'MISSED'}")
        print(f"  app p95 {p95(base):.2f} ms -> {p95(during):.2f} ms during (b): {p95_change:+.0f} %   "
              f"(target <= +20 %)   {'OK' if p95_change <= 20 else 'MISSED'}")
        t_change = (p95(during_t) / p95(base) - 1) * 100
        out["app_p95_change_throttled_pct"] = t_change
        print(f"  throttled (b'): {bt:,.0f} rows/s ({bt / a:,.0f}x a, {bt / c:.0%} of c), app p95 "
              f"{p95(during_t):.2f} ms: {t_change:+.0f} %")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        if args.keep:
            print(f"cluster kept: {legacy_dsn} {new_dsn} (datadir {cluster.datadir})")
    finally:
        if not args.keep:
            cluster.destroy()
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
