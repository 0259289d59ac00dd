"""Backfill benchmark, like with like: every figure from one run, all under the same application load.

    .venv/bin/python bench/backfill_bench.py [--listings 1000000] [--window 30] [--json out.json]
    .venv/bin/python bench/backfill_bench.py --only-copy [--listings 200000]   # just (c) and (b)

Starts its own throwaway PostgreSQL cluster with PostgreSQL's DEFAULT durability (fsync,
synchronous_commit, full_page_writes on: ``PgCluster(durable=True)``), seeds the demo databases
(devtools.demo_data.build: ~70 % of the listings are ACTIVE = in scope) and runs a simulated
application (devtools.simulator: reads, updates, creates with dual-write) at a fixed request rate
through EVERY measurement below; its client-side p95 is compared with the same load alone.

  (a) the seed's loop without its 1 s sleep: OFFSET pages of 100 ACTIVE listings, per row an
      existence check, a provider lookup and an INSERT (autocommit), timed on a sample in the middle
      of the OFFSET range (the run's average: OFFSET cost is linear);
  (c) the ceiling: P parallel COPY pipes (legacy ``COPY ... TO STDOUT`` -> new ``COPY ... FROM
      STDIN``, one key range each) into an empty copy of the target table (same indexes, and the
      target's foreign keys: our copy must satisfy them, so must the ceiling); ``--only-copy`` also
      prints (c0), the same pipes without the FK, as information;
  (b) ours at parallelism P, no cap (migration_engine.backfill, shipped config otherwise);
  (s) a sweep of fixed rows/s caps (fractions of (b)), each for ``--window`` seconds: the best cap
      whose p95 stays within the budget (+20 %);
  (k) ours with the latency-budget controller at +20 % (backfill.throttle.budget), same window.

Prints every figure and the ratios against the targets (P=2 >= 50 % of P COPY pipes; controller
p95 within +20 % and throughput >= 1.5x the best fixed cap within the budget). Timings depend on the
machine and what else runs on it (the load average is printed): it prints, it never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

# --- the load's peak on the database: the application's reporting query (a seller dashboard's aggregate
# over the listings) run back to back by --peak-sessions sessions during every peak, as the peak hour's
# traffic keeps a database busy; its latency is reported apart from the requests' p95
REPORT_SQL = ("SELECT tenant_id, count(*), avg(price_cents) FROM public.marketplace_listings "
              "WHERE status = 'ACTIVE' GROUP BY tenant_id")

# --- (c) the practical limit, into the real target table (same indexes, FK, identity), emptied first.
# The COPY pipe cannot join: it writes tenant_id as provider_id, which the demo data makes valid
# (provider ids follow tenant ids); the single-database INSERT does the real join.
LIMIT_EMPTY = "TRUNCATE marketplace.service_listings"
LIMIT_COPY_OUT = ("COPY (SELECT id, tenant_id, title, description, price_cents, "
                  "CASE status WHEN 'ACTIVE' THEN 'active' END, created_at, updated_at "
                  "FROM public.marketplace_listings WHERE status = 'ACTIVE') TO STDOUT")
LIMIT_COPY_IN = ("COPY marketplace.service_listings (legacy_listing_id, provider_id, title, description, "
                 "price_cents, status, created_at, updated_at) FROM STDIN")
CEILING_TABLE = ("DROP TABLE IF EXISTS marketplace.zdm_bench_ceiling; "
                 "CREATE TABLE marketplace.zdm_bench_ceiling (LIKE marketplace.service_listings INCLUDING ALL)")
# the target's foreign keys, re-created on the ceiling's copy (LIKE ... INCLUDING ALL copies none)
CEILING_FKS = """
DO $$
DECLARE c record;
BEGIN
    FOR c IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
             WHERE conrelid = 'marketplace.service_listings'::regclass AND contype = 'f' LOOP
        EXECUTE format('ALTER TABLE marketplace.zdm_bench_ceiling ADD CONSTRAINT %I %s', 'zdm_' || c.conname, c.def);
    END LOOP;
END $$
"""
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


def ms(timed: list[tuple[float, float]]) -> list[float]:
    return [v for _t, v in timed]


def split_phases(timed: list[tuple[float, float]], app) -> tuple[list[float], list[float]]:
    """The latencies of the load's troughs and of its peaks (the same pattern from every measurement's start)."""
    lo, hi = app.shape.peak_at
    peak = [v for t, v in timed if lo <= t % app.shape.peak_period < hi]
    trough = [v for t, v in timed if not lo <= t % app.shape.peak_period < hi]
    return trough, peak


def phases(timed: list[tuple[float, float]], app, base: list[float]) -> str:
    """p95 change in the load's troughs / in its peaks, against ``base`` (the app alone, whole periods)."""
    trough, peak = split_phases(timed, app)
    ref = p95(base)
    return "/".join(f"{(p95(x) / ref - 1) * 100:+.0f} %" if x else "-" for x in (trough, peak))


def seconds_into_fresh_minute(seconds: float) -> float:
    """How long to run so that the run ends ``seconds`` into a minute that began during it."""
    now = time.time()
    return (60 - now % 60) + seconds


# controller variants for (k): the budget section's keys on top of the shipped config
VARIANTS: dict[str, dict] = {
    "shipped": {},
    # the probes' allowance from the stats contract's p95 (the default before the last run of this branch)
    "contract-p95": {"probe_allowance": "app_p95"},
    # the controller before this branch's signals: probes relative to their own baseline, no commit probe
    "relative": {"probe_allowance": "relative", "commit_probe": False, "reset_after_cut": False,
                 "cut_in_proportion": False, "cut_interval": None, "fast_recovery": False},
    # the operator states the app's p95 (ms) as their APM shows it: the bench's client-side p95 of the app alone
    "stated-p95": {"probe_allowance": "app_p95", "app_p95_ms": "<the app's p95 alone>"},
    # the same, reacting within a decision: a 2-sample signal window, a cut may follow a cut
    "stated-p95-fast": {"probe_allowance": "app_p95", "app_p95_ms": "<the app's p95 alone>", "signal_samples": 2,
                        "cut_interval": 1},
    "app_p95-lookups": {"commit_probe": False},
    "relative+commit": {"probe_allowance": "relative"},  # = shipped since probe_allowance defaults to relative
}


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
    """The simulator at a request rate that follows ``rate_at``; client-side latency of every request.

    Runs in its own process (:class:`AppProcess`): a real application does not share the copy's Python
    interpreter, so it must not share its GIL either (in-process threads measured GIL contention
    between the copy's threads and the app, which no real application sees, and added noise)."""

    def __init__(self, legacy_dsn: str, new_dsn: str, cfg, rate: float, seed: int = 1) -> None:
        def lc():
            return psycopg2.connect(legacy_dsn)

        def nc():
            return psycopg2.connect(new_dsn)

        self.connect_legacy = lc
        self.control = ControlClient(lc, SCHEMA, instance="bench", flag_ttl=5)
        self.app = MarketplaceApp(lc, nc, cfg, control=self.control, rng=random.Random(seed))
        self.work = Workload(self.app, random.Random(seed), pool_size=5000)
        self.work.load()
        self.mix = Mix(create=1, update=2, read=7)
        self.rate = rate
        self.rng = random.Random(seed)

    peak_factor = 1.0  # request rate x this during the peak of every period (1 = constant load)
    peak_period = 15.0  # seconds
    peak_at = (7.5, 12.5)  # seconds into every period (the copy's first seconds see the trough)

    def rate_at(self, t: float) -> float:
        """Requests/s ``t`` seconds into a measurement: the same pattern for every measurement."""
        lo, hi = self.peak_at
        return self.rate * (self.peak_factor if lo <= t % self.peak_period < hi else 1.0)

    def pattern(self) -> str:
        if self.peak_factor == 1.0:
            return f"constant {self.rate:g} req/s"
        lo, hi = self.peak_at
        reports = (f" and {self.peak_sessions} reporting session(s) running its aggregate back to back"
                   if self.peak_sessions else "")
        return (f"{self.rate:g} req/s with a peak of {self.rate * self.peak_factor:g} req/s{reports} from {lo:g} to "
                f"{hi:g} s of every {self.peak_period:g} s (same pattern from the start of every measurement)")

    peak_sessions = 0  # sessions running REPORT_SQL back to back during every peak (the database's peak load)
    report_ms: list[float]

    def _reports(self, start: float, stop: threading.Event) -> None:
        """One reporting session: REPORT_SQL back to back while the load is in a peak."""
        conn = self.connect_legacy()
        conn.autocommit = True
        lo, hi = self.peak_at
        try:
            with conn.cursor() as cur:
                while not stop.is_set():
                    if lo <= (time.perf_counter() - start) % self.peak_period < hi:
                        t0 = time.perf_counter()
                        cur.execute(REPORT_SQL)
                        cur.fetchall()
                        self.report_ms.append((time.perf_counter() - t0) * 1000)
                    else:
                        stop.wait(0.02)
        finally:
            conn.close()

    def run(self, should_stop) -> list[tuple[float, float]]:
        """Requests until ``should_stop()``: (seconds since the start, latency ms) of each."""
        latencies: list[tuple[float, float]] = []
        next_at = start = time.perf_counter()
        last_flush = next_at
        self.report_ms = []
        stop_reports = threading.Event()
        reports = [threading.Thread(target=self._reports, args=(start, stop_reports), daemon=True)
                   for _ in range(self.peak_sessions if self.peak_factor != 1.0 else 0)]
        [r.start() for r in reports]
        while not should_stop():
            now = time.perf_counter()
            if now < next_at:
                time.sleep(min(next_at - now, 0.05))
                continue
            next_at += 1.0 / self.rate_at(next_at - start)
            t0 = time.perf_counter()
            try:
                self.work.step(self.mix.pick(self.rng))
            except Exception:  # noqa: BLE001 - count it as slow rather than drop it
                pass
            latencies.append((t0 - start, (time.perf_counter() - t0) * 1000))
            if t0 - last_flush > 2:
                self.control.flush()
                last_flush = t0
        self.control.flush()
        stop_reports.set()
        [r.join() for r in reports]
        return latencies

    def close(self) -> None:
        self.app.close()
        self.control.close()


def _app_process(conn, legacy_dsn: str, new_dsn: str, rate: float) -> None:
    """The application's process: commands over ``conn`` - ("shape", factor, period, lo, hi),
    ("run", seconds or None: until "stop"), ("close",); every run answers its [(t, ms), ...]."""
    app = AppLoad(legacy_dsn, new_dsn, load_config(), rate)
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd[0] == "shape":
            app.peak_factor, app.peak_period, app.peak_at, app.peak_sessions = cmd[1], cmd[2], (cmd[3], cmd[4]), cmd[5]
        elif cmd[0] == "run":
            seconds = cmd[1]
            t_end = None if seconds is None else time.perf_counter() + seconds

            def should_stop(t_end=t_end):
                if t_end is not None:
                    return time.perf_counter() >= t_end
                return conn.poll() and conn.recv() == ("stop",)

            conn.send((app.run(should_stop), app.report_ms))
        elif cmd[0] == "close":
            app.close()
            conn.send("closed")
            return


class AppProcess:
    """The application load in a separate process (spawned: no connection or lock of ours inherited)."""

    def __init__(self, legacy_dsn: str, new_dsn: str, rate: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_app_process, args=(child, legacy_dsn, new_dsn, rate), daemon=True)
        self.proc.start()
        if self._conn.recv() != "ready":
            raise RuntimeError("application process did not start")
        self.shape = AppLoad.__new__(AppLoad)  # only its pattern attributes (rate_at, pattern)
        self.shape.rate = rate

    def set_shape(self, factor: float, period: float, sessions: int = 0) -> None:
        self.shape.peak_factor, self.shape.peak_period, self.shape.peak_sessions = factor, period, sessions
        self.shape.peak_at = (period / 2, period * 5 / 6)
        self._conn.send(("shape", factor, period, *self.shape.peak_at, sessions))

    def pattern(self) -> str:
        return self.shape.pattern()

    def measure_for(self, seconds: float) -> list[float]:
        self._conn.send(("run", seconds))
        timed, self.report_ms = self._conn.recv()
        return [ms for _t, ms in timed]

    def start(self) -> None:
        self._conn.send(("run", None))

    def stop(self) -> list[tuple[float, float]]:
        self._conn.send(("stop",))
        timed, self.report_ms = self._conn.recv()
        return timed

    def close(self) -> None:
        if self.proc.is_alive():
            self._conn.send(("close",))
            self._conn.recv()
        self.proc.join(timeout=10)


# --- the cluster every measurement runs on ----------------------------------------------------------
@dataclass
class Seeded:
    legacy_dsn: str
    new_dsn: str
    counts: dict
    seed_seconds: float
    stack: contextlib.ExitStack  # closed before the cluster goes: e.g. stack.callback(app.close)


@contextlib.contextmanager
def seeded_cluster(listings: int, prefix: str = "zdm-bench-") -> Iterator[Seeded]:
    """A throwaway cluster with PostgreSQL's DEFAULT durability, the demo databases seeded with
    ``listings`` listings, the control schema and dual-write on; destroyed (after ``stack``) on exit."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(workdir, 0o755)
    cluster = PgCluster(workdir / "pgdata", free_port(), durable=True)
    log(f"throwaway PostgreSQL cluster in {workdir}, DEFAULT durability (fsync, synchronous_commit, "
        f"full_page_writes on); {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine)")
    cluster.start()
    try:
        with contextlib.ExitStack() as stack:
            for name in ("breederhq", "marketplace"):
                cluster.create_database(name, drop_existing=True)
            legacy_dsn, new_dsn = cluster.dsn("breederhq"), cluster.dsn("marketplace")
            t0 = time.perf_counter()
            counts = demo_data.build(legacy_dsn, new_dsn, listings=listings)
            conn = psycopg2.connect(legacy_dsn)
            control.ensure_control_schema(conn, SCHEMA)
            control.set_flag(conn, SCHEMA, "dual_write_enabled", True, actor="bench", reason="benchmark")
            conn.close()
            yield Seeded(legacy_dsn, new_dsn, counts, time.perf_counter() - t0, stack)
    finally:
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


# --- (b) ---------------------------------------------------------------------------------------
def settle(dsn: str) -> None:
    """The same start for every measurement: the previous run's dirty pages written out (a CHECKPOINT),
    so a sweep point or controller run does not pay for the writes of the one before it."""
    q(dsn, "CHECKPOINT")


def under_load(app: AppProcess, new_dsn: str, fn, *a, **kw) -> tuple[object, list[tuple[float, float]]]:
    """fn(*a, **kw) under the application load: (its result, the app's (t, ms) of every request)."""
    settle(new_dsn)  # before the load starts: not in any app latency
    app.start()
    app.started = time.monotonic()  # ~ the app's t = 0 (its load pattern's clock)
    try:
        result = fn(*a, **kw)
    finally:
        lat = app.stop()
    return result, lat


def ours(legacy_dsn: str, new_dsn: str, cfg, parallelism: int, max_rows_per_second: int = 0,
         seconds: float | None = None, sleep: Callable[[float], None] = time.sleep,
         **overrides) -> tuple[float, float, list]:
    """rows/s of our backfill (a full pass, or the first ``seconds`` of one); ``sleep``: the workers' sleep."""
    q(new_dsn, LIMIT_EMPTY)
    legacy, new = psycopg2.connect(legacy_dsn), psycopg2.connect(new_dsn)
    s = backfill_settings(cfg, parallelism=parallelism, max_rows_per_second=max_rows_per_second, **overrides)
    started = time.perf_counter()
    plan = plan_entity(legacy, new, cfg, "listings", s, restart=True, actor="bench")
    legacy.close()
    new.close()
    results: list = [None] * len(plan.jobs)
    workers: list = [None] * len(plan.jobs)
    deadline = None if seconds is None else started + seconds

    def work(i, job):
        workers[i] = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lambda: psycopg2.connect(legacy_dsn),
                                 lambda: psycopg2.connect(new_dsn), share=len(plan.jobs), actor="bench", sleep=sleep,
                                 should_stop=lambda: deadline is not None and time.perf_counter() >= deadline)
        results[i] = workers[i].run()

    threads = [threading.Thread(target=work, args=(i, j)) for i, j in enumerate(plan.jobs)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    elapsed = time.perf_counter() - started
    rows = sum(r.rows_read for r in results)
    return rows / elapsed, elapsed, [(r, w) for r, w in zip(results, workers, strict=True)]


# --- (c) ---------------------------------------------------------------------------------------
def copy_pipes(legacy_dsn: str, new_dsn: str, pipes: int, *, fk: bool = True) -> tuple[float, int]:
    """P parallel COPY pipes, one key range each, into an empty copy of the target table (same columns,
    defaults, indexes; ``fk``: also the target's foreign keys, which our copy must satisfy too, so the
    ceiling must: like with like); the application keeps dual-writing into the real one meanwhile."""
    q(new_dsn, CEILING_TABLE)
    if fk:
        q(new_dsn, CEILING_FKS)
    ((lo, hi),) = q(legacy_dsn, "SELECT min(id), max(id) FROM public.marketplace_listings")
    step = (hi - lo + pipes) // pipes
    bounds = [(lo + i * step, lo + (i + 1) * step) for i in range(pipes)]
    errors: list[BaseException] = []

    def pipe(k_lo: int, k_hi: int) -> None:
        legacy, new = psycopg2.connect(legacy_dsn), psycopg2.connect(new_dsn)
        r, w = os.pipe()
        reader, writer = os.fdopen(r, "rb"), os.fdopen(w, "wb")
        in_sql = LIMIT_COPY_IN.replace("marketplace.service_listings", "marketplace.zdm_bench_ceiling")
        out_sql = LIMIT_COPY_OUT.replace("WHERE status = 'ACTIVE'",
                                         f"WHERE status = 'ACTIVE' AND id >= {int(k_lo)} AND id < {int(k_hi)}")

        def produce():
            try:
                with legacy.cursor() as cur:
                    cur.copy_expert(out_sql, writer)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                writer.close()

        t = threading.Thread(target=produce)
        t.start()
        try:
            with new.cursor() as cur:
                cur.copy_expert(in_sql, reader)
            new.commit()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        t.join()
        legacy.close()
        new.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=pipe, args=b) for b in bounds]
    [t.start() for t in threads]
    [t.join() for t in threads]
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    (rows,) = q(new_dsn, "SELECT count(*) FROM marketplace.zdm_bench_ceiling")[0]
    q(new_dsn, "DROP TABLE marketplace.zdm_bench_ceiling")
    return rows / elapsed, rows


def _only_copy(args, out, legacy_dsn, new_dsn, cfg, in_scope, app, base, with_load, change) -> int:
    """--only-copy: (c) then (b), same load, and their ratio (the rest of main() skipped)."""
    P = args.parallelism
    (c, n_c), lat_c = with_load(copy_pipes, legacy_dsn, new_dsn, P)
    log(f"(c) {P} parallel COPY pipes, target's FK: {c:,.0f} rows/s ({n_c:,} rows); app p95 {change(lat_c):+.0f} %")
    (c0, n_c0), lat_c0 = with_load(copy_pipes, legacy_dsn, new_dsn, P, fk=False)
    log(f"(c0) {P} parallel COPY pipes, no FK: {c0:,.0f} rows/s ({n_c0:,} rows); app p95 {change(lat_c0):+.0f} %")
    (b, b_secs, res_b), lat_b = with_load(ours, legacy_dsn, new_dsn, cfg, P)
    rows = sum(r.rows_read for r, _ in res_b)
    log(f"(b) ours, {P} ranges, no cap: {b:,.0f} rows/s ({rows:,} rows in {b_secs:.1f}s); "
        f"app p95 {change(lat_b):+.0f} %")
    paths: dict[str, int] = {}
    for _, w in res_b:
        for k, v in getattr(w, "write_paths", {}).items():
            paths[k] = paths.get(k, 0) + v
    app.close()
    out.update(copy_pipes_rows_per_s=c, copy_pipes_no_fk_rows_per_s=c0, ours_rows_per_s=b,
               ours_batches_by_write_path=paths, app_p95_baseline_ms=p95(base),
               app_p95_change_pct={"c": change(lat_c), "c0": change(lat_c0), "b": change(lat_b)},
               load_average_end=os.getloadavg()[0])
    print()
    print(f"=== backfill of {in_scope:,} in-scope listings (of {args.listings:,}), (b) and (c) only; default "
          f"durability; app load {args.app_rate:g} req/s throughout; {os.cpu_count()} CPUs, load avg "
          f"{out['load_average_start']:.1f} -> {out['load_average_end']:.1f} ===")
    print(f"  app p95 alone                     {p95(base):>10.2f} ms")
    print(f"  (c)  {P} COPY pipes, target's FK   {c:>12,.0f} rows/s   p95 {change(lat_c):+.0f} %")
    print(f"  (c0) {P} COPY pipes, no FK (info)  {c0:>12,.0f} rows/s   p95 {change(lat_c0):+.0f} %")
    print(f"  (b)  ours, P={P}, no cap           {b:>12,.0f} rows/s   p95 {change(lat_b):+.0f} %"
          + (f"   batches by write path {paths}" if paths else ""))
    print(f"  b / c  = {b / c:.0%}   (target >= 50 %, judged: the pipes satisfy the target's FK as ours must)   "
          f"{'OK' if b / c >= 0.5 else 'MISSED'}")
    print(f"  b / c0 = {b / c0:.0%}   (information: pipes without the FK)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listings", type=int, default=3_000_000,
                    help="enough that no windowed run finishes the table before its window ends")
    ap.add_argument("--seed-sample", type=int, default=3_000, help="rows of the seed's method to time")
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--app-rate", type=float, default=50.0, help="simulated application requests/s")
    ap.add_argument("--peak-factor", type=float, default=3.0,
                    help="app rate x this during a peak of every period (1 = constant load)")
    ap.add_argument("--peak-period", type=float, default=30.0, help="seconds; peak in its middle third")
    ap.add_argument("--peak-sessions", type=int, default=1,
                    help="sessions running the reporting query back to back during every peak (the database's "
                         "peak load; 0 = only the request rate peaks)")
    ap.add_argument("--baseline-seconds", type=float, default=60.0, help="the app alone (whole load periods)")
    ap.add_argument("--window", type=float, default=60.0,
                    help="seconds per sweep point and controller run (whole load periods)")
    ap.add_argument("--budget-pct", type=float, default=20.0)
    ap.add_argument("--sweep", type=float, nargs="+",
                    default=[0.03, 0.045, 0.07, 0.1, 0.15, 0.22],
                    help="fixed caps as fractions of (b)'s rate (x1.5 apart: the best cap is within 1.5x of "
                         "the true best)")
    ap.add_argument("--variants", nargs="+", default=["shipped"], choices=sorted(VARIANTS),
                    help="controller variants to run as (k), each after the app alone into a fresh stats minute; "
                         "the first is the shipped config")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--only-copy", action="store_true",
                    help="measure only (c) the COPY pipes and (b) ours at P (skip the seed loop, sweep, controller)")
    args = ap.parse_args(argv)
    cfg = load_config()
    P = args.parallelism

    out: dict = {"listings": args.listings, "durability": "default", "cpus": os.cpu_count(),
                 "app_rate": args.app_rate, "parallelism": P, "window_s": args.window,
                 "load_average_start": os.getloadavg()[0]}
    with seeded_cluster(args.listings) as seeded:
        legacy_dsn, new_dsn, counts = seeded.legacy_dsn, seeded.new_dsn, seeded.counts
        in_scope = counts["active_listings"]
        log(f"seeded {counts['listings']:,} listings ({in_scope:,} ACTIVE = in scope) "
            f"in {seeded.seed_seconds:.1f}s")
        out["in_scope_rows"] = in_scope

        app = AppProcess(legacy_dsn, new_dsn, args.app_rate)  # its own process: no GIL shared with the copy
        seeded.stack.callback(app.close)
        app.measure_for(2)  # warm-up (constant rate)
        app.set_shape(args.peak_factor, args.peak_period, args.peak_sessions)
        out["app_load"] = app.pattern()
        base = app.measure_for(args.baseline_seconds)
        base_report = statistics.median(app.report_ms) if app.report_ms else None
        log(f"application alone ({app.pattern()}): {len(base)} requests, p50 {statistics.median(base):.2f} "
            f"ms, p95 {p95(base):.2f} ms" + (f"; reporting query median {base_report:.0f} ms" if base_report else ""))
        out["report_ms_median_alone"] = base_report

        def reports() -> str:
            """The last measurement's reporting queries: median and its change against the app alone."""
            if not app.report_ms or not base_report:
                return ""
            med = statistics.median(app.report_ms)
            return f"; reports {med:.0f} ms ({(med / base_report - 1) * 100:+.0f} %)"

        def with_load(fn, *a, keep_times=False, **kw):
            """fn(*a, **kw) under the application load: (its result, the app's latencies [(t, ms)] or [ms])."""
            result, lat = under_load(app, new_dsn, fn, *a, **kw)
            return result, (lat if keep_times else ms(lat))

        def change(lat: list[float]) -> float:
            return (p95(lat) / p95(base) - 1) * 100

        if args.only_copy:
            return _only_copy(args, out, legacy_dsn, new_dsn, cfg, in_scope, app, base, with_load, change)

        # (a) the seed's loop, under the load
        q(new_dsn, LIMIT_EMPTY)
        a, lat_a = with_load(seed_method, legacy_dsn, new_dsn, start_offset=in_scope // 2, rows=args.seed_sample)
        log(f"(a) seed loop, no sleep: {a:,.0f} rows/s (sample of {args.seed_sample:,} at offset {in_scope // 2:,}); "
            f"app p95 {p95(lat_a):.2f} ms ({change(lat_a):+.0f} %)")

        # (c) P COPY pipes, under the load
        (c, n_c), lat_c = with_load(copy_pipes, legacy_dsn, new_dsn, P)
        log(f"(c) {P} parallel COPY pipes, target's FK: {c:,.0f} rows/s ({n_c:,} rows); app p95 {p95(lat_c):.2f} ms "
            f"({change(lat_c):+.0f} %)")

        # (b) ours at P, no cap, full pass, under the load
        (b, b_secs, res_b), lat_b = with_load(ours, legacy_dsn, new_dsn, cfg, P)
        log(f"(b) ours, {P} ranges, no cap: {b:,.0f} rows/s ({sum(r.rows_read for r, _ in res_b):,} rows in "
            f"{b_secs:.1f}s); app p95 {p95(lat_b):.2f} ms ({change(lat_b):+.0f} %)")

        # (s) the sweep of fixed caps, each for the window
        sweep = []
        for frac in args.sweep:
            cap = max(100, int(b * frac))
            (r, _secs, res_s), lat_t = with_load(ours, legacy_dsn, new_dsn, cfg, P, max_rows_per_second=cap,
                                                seconds=args.window, keep_times=True)
            lat = ms(lat_t)
            early = all(res.status == "done" for res, _w in res_s)
            sweep.append({"cap": cap, "rows_per_s": r, "p95_ms": p95(lat), "p95_change_pct": change(lat),
                          "requests": len(lat), "finished_early": early, "phases": phases(lat_t, app, base),
                          "reports": reports()})
            log(f"(s) cap {cap:,} rows/s: {r:,.0f} rows/s, app p95 {p95(lat):.2f} ms ({change(lat):+.0f} %)"
                + reports()
                + (" - FINISHED THE TABLE BEFORE THE WINDOW ENDED: not comparable (use more --listings)"
                   if early else ""))
        within = [x for x in sweep if x["p95_change_pct"] <= args.budget_pct and not x["finished_early"]]
        best = max(within, key=lambda x: x["rows_per_s"]) if within else None

        # (k) the controller at the budget, same window, once per variant (the first is the shipped config).
        # Before each, the app alone until a fresh minute of the stats contract holds only the app alone
        # (its buckets are per minute: a shorter pause would give the controller a baseline from the sweep's
        # load); that also shows how far the same load alone moves between two measurements (the noise floor).
        variants = []
        for name in args.variants:
            again = app.measure_for(seconds_into_fresh_minute(args.baseline_seconds))
            noise = change(again)
            log(f"application alone again: p95 {p95(again):.2f} ms ({noise:+.0f} % vs the first: the noise floor of "
                f"a p95 comparison on this machine now)")
            budget = {"enabled": True, "max_latency_increase_pct": args.budget_pct, **VARIANTS[name]}
            if "app_p95_ms" in budget:
                budget["app_p95_ms"] = round(p95(base), 2)  # the first measurement of the app alone
            (k, _secs, res_k), lat_k = with_load(
                ours, legacy_dsn, new_dsn, cfg, P, seconds=args.window, app_latency_window=args.baseline_seconds,
                throttle={"budget": budget}, keep_times=True)
            k_early = all(r.status == "done" for r, _w in res_k)
            decisions = [d for _r, w in res_k for d in w.decisions]
            acts = {x: sum(d.action == x for d in decisions) for x in ("increase", "hold", "decrease")}
            cuts: dict[str, int] = {}
            for d in decisions:
                if d.action == "decrease":
                    cuts[d.signal] = cuts.get(d.signal, 0) + 1
            w0 = res_k[0][1]
            limits = {kk: None if v is None else round(v, 2) for kk, v in w0.controller.limits().items()}
            log(f"(k) controller [{name}] (+{args.budget_pct:g} %): {k:,.0f} rows/s; app p95 {p95(ms(lat_k)):.2f} ms "
                f"({change(ms(lat_k)):+.0f} %; trough/peak {phases(lat_k, app, base)}); decisions {acts}, cuts by "
                f"signal {cuts}; baseline {w0.controller.baseline.as_dict()}, limits {limits}")
            # one controller for the pass (backfill_controller): each range paced at the pass's rate / the
            # ranges still copying; the decisions below are the pass's, each made by one of the ranges
            made_by = {w.range_no: len(w.decisions) for _r, w in res_k}
            pace = ", ".join(f"range {w.range_no} {statistics.fmean([rt / c for _n, rt, c in w.paced] or [0]):,.0f}"
                             for _r, w in res_k)
            log(f"(k) the pass: {len(decisions)} decisions (made by range: {made_by}); mean pass rate "
                f"{statistics.fmean([d.rows_per_second for d in decisions] or [0]):,.0f} rows/s; "
                f"mean pace {pace} rows/s")
            for _r, w in res_k:
                lo, hi = app.shape.peak_at
                in_peak = [lo <= (t - app.started) % app.shape.peak_period < hi for t in w.decision_times]
                pairs = list(zip(w.decisions, in_peak, strict=True))
                by = {ph: [d.rows_per_second for d, pk in pairs if pk == (ph == "peak")] for ph in ("trough", "peak")}
                cut_at = {ph: sum(d.action == "decrease" for d, pk in pairs if pk == (ph == "peak"))
                          for ph in ("trough", "peak")}
                log(f"(k) {w.label}: the pass's rate in the decisions this range made: trough "
                    f"{statistics.fmean(by['trough'] or [0]):,.0f} / peak {statistics.fmean(by['peak'] or [0]):,.0f} "
                    f"rows/s; cuts trough/peak {cut_at}")
                texts = [d.text() for d in w.decisions]
                log(f"(k) {w.label}: {len(texts)} decisions; first {texts[:3]}; last {texts[-3:]}")
                cut_texts = [d.text() for d in w.decisions if d.action == "decrease"]
                log(f"(k) {w.label}: cuts {cut_texts[:8]}")
            variants.append({"name": name, "settings": budget, "rows_per_s": k, "p95_ms": p95(ms(lat_k)),
                             "reports": reports(),
                             "p95_change_pct": change(ms(lat_k)), "phases": phases(lat_k, app, base),
                             "decisions": acts, "cuts": cuts, "finished_early": k_early, "noise_pct": noise,
                             "limits": limits})
        out.update(seed_rows_per_s=a, copy_pipes_rows_per_s=c, ours_rows_per_s=b, app_p95_baseline_ms=p95(base),
                   app_p95_change_pct={"a": change(lat_a), "c": change(lat_c), "b": change(lat_b)},
                   sweep=sweep, best_cap=best, controller=variants, load_average_end=os.getloadavg()[0])

        print()
        print(f"=== backfill of {in_scope:,} in-scope listings (of {args.listings:,}); default durability; "
              f"app load {app.pattern()} throughout, in its own process; {os.cpu_count()} CPUs, load avg "
              f"{out['load_average_start']:.1f} -> {out['load_average_end']:.1f} ===")
        noises = ", ".join(f"{v['noise_pct']:+.0f} %" for v in variants)
        print(f"  app p95 alone               {p95(base):>10.2f} ms   (alone again before each (k): {noises} = "
              f"noise floor)")
        print(f"  (a) seed loop, no sleep     {a:>12,.0f} rows/s   p95 {change(lat_a):+.0f} %")
        print(f"  (c) {P} COPY pipes, target's FK {c:>10,.0f} rows/s   p95 {change(lat_c):+.0f} %")
        print(f"  (b) ours, P={P}, no cap        {b:>12,.0f} rows/s   p95 {change(lat_b):+.0f} %")
        for x in sweep:
            print(f"  (s) fixed cap {x['cap']:>9,}     {x['rows_per_s']:>12,.0f} rows/s   "
                  f"p95 {x['p95_change_pct']:+.0f} %   (trough/peak {x['phases']}{x['reports']})"
                  + ("   (finished early: not comparable)" if x["finished_early"] else ""))
        for v in variants:
            print(f"  (k) controller +{args.budget_pct:g} % [{v['name']}] {v['rows_per_s']:>12,.0f} rows/s   "
                  f"p95 {v['p95_change_pct']:+.1f} %   (trough/peak {v['phases']}{v['reports']}; cuts {v['cuts']})")
        print(f"  b / a = {b / a:,.0f}x")
        print(f"  b / c = {b / c:.0%}   (target >= 50 %, the pipes satisfy the target's FK as ours must)   "
              f"{'OK' if b / c >= 0.5 else 'MISSED'}")
        if best is None:
            print(f"  no fixed cap of the sweep kept p95 within +{args.budget_pct:g} %")
        else:
            comparable = [x for x in sweep if not x["finished_early"]]
            for v in variants:
                ratio = v["rows_per_s"] / best["rows_per_s"]
                ok = v["p95_change_pct"] <= args.budget_pct and ratio >= 1.5 and not v["finished_early"]
                print(f"  controller [{v['name']}] p95 {v['p95_change_pct']:+.1f} % (budget +{args.budget_pct:g} %), "
                      f"best fixed cap within the budget {best['cap']:,} -> {best['rows_per_s']:,.0f} rows/s "
                      f"(p95 {best['p95_change_pct']:+.0f} %); controller / best cap = {ratio:.2f}x   "
                      f"(target >= 1.5x within budget)   {'OK' if ok else 'MISSED'}")
                v["over_best_cap"] = ratio
                if v["finished_early"]:
                    print("  the controller finished the table before the window ended: NOT COMPARABLE "
                          "(use more --listings)")
            if comparable and best is comparable[-1]:
                print("  the sweep's highest comparable cap was within the budget: the best fixed cap is not "
                      "bracketed (the ratio overstates the controller; sweep higher)")
            worst_noise = max((abs(v["noise_pct"]) for v in variants), default=0)
            if worst_noise >= args.budget_pct / 2:
                print(f"  the same load alone moved p95 by up to {worst_noise:.0f} % between two measurements: p95 "
                      f"differences of that size are noise here, not the copy")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
