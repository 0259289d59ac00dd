"""Consistency diff benchmark: our range-checksum diff vs reladiff, same data, same run.

    .venv/bin/python bench/diff_bench.py [--listings 100000 1000000 4000000] [--k 30] [--repeat 1] [--json out.json]

Starts its own throwaway PostgreSQL cluster (devtools.pgcluster), seeds the demo
databases (devtools.demo_data.build; ~70 % of the listings are ACTIVE = in scope), fills
the new side with a correct set-based copy of the ACTIVE listings (COPY pipe + INSERT ... SELECT,
devtools.demo_copy), then plants K differences: K/3 changed titles, K/3 rows
deleted from the new table (missing in new) and K/3 rows only in the new table (extra in new), and
creates the control schema as migration_setup does (no write cutover recorded: the old database is
written first). The planted differences model real, settled differences, not writes made a moment
before the diff starts: after planting the bench waits ``recheck_delay`` (outside every timed run)
and says so. The plant SQL is not shaped to suit the re-check's dating: the extra rows get
``updated_at`` from the table default (now() at planting), the changed titles keep theirs.

Both tools get the same job - in-scope rows only, status mapped, provider compared as the tenant
it stands for, 8 value columns - and must report exactly the K planted keys:

  ours:     migration_engine.consistency.diff.diff_entity with the project config (chunk_size,
            bisect_min_rows, bisect_factor, parallelism, recheck_delay from include/migration.yaml,
            nothing overridden) - the mapping is applied inside each server's checksum query.
  reladiff: reladiff.diff_tables (HASHDIFF, its defaults: bisection factor 32, threshold 16384)
            over two views that apply the same scope and mapping (bench_old_view.sql /
            bench_new_view.sql), with as many threads as our parallelism.

reladiff is installed for this benchmark only (``.venv/bin/pip install reladiff``); it is not a
project dependency. Timings depend on the machine and on what else runs on it: this prints the
numbers and the ratio, it never asserts on them. The cluster runs with PostgreSQL's default
durability (fsync, synchronous_commit, full_page_writes on: ``PgCluster(durable=True)``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devtools import demo_data  # noqa: E402
from devtools.demo_copy import copy_active_listings  # noqa: E402
from devtools.pgcluster import PgCluster, free_port  # noqa: E402
from migration_engine import control, sqlfiles  # noqa: E402
from migration_engine.config import DEFAULT_CONFIG_PATH, parse_config  # noqa: E402
from migration_engine.consistency.diff import diff_entity  # noqa: E402

COLUMNS = ("title", "description", "price_cents", "status", "created_at", "updated_at", "tenant_id")
EXTRA_BASE = 50_000_000  # legacy ids for rows only in the new table
SHIPPED = parse_config(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))  # the shipped config, nothing overridden


def _run(conn, name: str, params: dict | None = None) -> list[tuple]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, name, params=params)
        rows = cur.fetchall() if cur.description else []
    conn.commit()
    return rows


def prepare(legacy_dsn: str, new_dsn: str, listings: int, k: int) -> dict:
    t0 = time.monotonic()
    counts = demo_data.build(legacy_dsn, new_dsn, listings=listings)
    seeded = time.monotonic() - t0
    legacy, new = psycopg2.connect(legacy_dsn), psycopg2.connect(new_dsn)
    try:
        t0 = time.monotonic()
        copied = copy_active_listings(legacy, new)
        copy_s = time.monotonic() - t0
        _run(new, "consistency_demo/bench_analyze.sql")
        third = max(1, k // 3)
        sample = [r[0] for r in _run(new, "consistency_demo/bench_sample_keys.sql", {"sample_size": 2 * third})]
        changed = sorted(r[0] for r in _run(new, "consistency_demo/bench_plant_changed.sql", {"keys": sample[0::2]}))
        missing = sorted(r[0] for r in _run(new, "consistency_demo/bench_plant_missing.sql", {"keys": sample[1::2]}))
        extra = sorted(r[0] for r in _run(new, "consistency_demo/bench_plant_extra.sql",
                                          {"keys": [EXTRA_BASE + i for i in range(k - 2 * third)]}))
        _run(legacy, "consistency_demo/bench_old_view.sql")
        _run(new, "consistency_demo/bench_new_view.sql")
        control.ensure_control_schema(legacy, SHIPPED.control_schema)  # what migration_setup leaves behind
    finally:
        legacy.close()
        new.close()
    return {"counts": counts, "seed_s": round(seeded, 1), "copied": copied, "copy_s": round(copy_s, 1),
            "planted": {"changed": changed, "missing_in_new": missing, "extra_in_new": extra}}


def run_ours(legacy_dsn: str, new_dsn: str) -> tuple[float, dict]:
    cfg = SHIPPED
    t0 = time.monotonic()
    r = diff_entity(cfg, "listings", lambda: psycopg2.connect(legacy_dsn), lambda: psycopg2.connect(new_dsn),
                    progress=lambda _msg: None)
    elapsed = time.monotonic() - t0
    found = {"changed": sorted(r.keys("changed")), "missing_in_new": sorted(r.keys("missing_in_new")),
             "extra_in_new": sorted(r.keys("missing_in_old"))}
    return elapsed, {"found": found, "old_count": r.old_count, "new_count": r.new_count, **r.details,
                     "settings": {k: str(getattr(cfg.consistency, k)) for k in
                                  ("chunk_size", "bisect_min_rows", "bisect_factor", "parallelism",
                                   "recheck_delay")}}


def run_reladiff(legacy_dsn: str, new_dsn: str, threads: int) -> tuple[float, dict] | None:
    try:
        from reladiff import connect_to_table, diff_tables
    except ImportError:
        return None
    t0 = time.monotonic()
    old = connect_to_table(legacy_dsn, "public.zdm_bench_old_listings", "id", thread_count=threads)
    new = connect_to_table(new_dsn, "marketplace.zdm_bench_new_listings", "id", thread_count=threads)
    minus, plus = set(), set()
    for sign, row in diff_tables(old, new, extra_columns=COLUMNS, threaded=True, max_threadpool_size=threads):
        (minus if sign == "-" else plus).add(int(row[0]))
    elapsed = time.monotonic() - t0
    for table in (old, new):
        table.database.close()
    # reladiff's driver (sqeleton) installs psycopg2.extras.wait_select as the process-wide wait
    # callback on connect; undo it so our diff and the next size's COPY (copy_expert refuses a wait
    # callback) run with psycopg2's default, as the product does
    psycopg2.extensions.set_wait_callback(None)
    found = {"changed": sorted(minus & plus), "missing_in_new": sorted(minus - plus),
             "extra_in_new": sorted(plus - minus)}
    return elapsed, {"found": found}


def one_size(listings: int, k: int, repeat: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="zdm-diff-bench-"))
    os.chmod(workdir, 0o755)
    cluster = PgCluster(workdir / "pgdata", free_port(), durable=True)
    cluster.start()
    try:
        for name in ("bench_legacy", "bench_new"):
            cluster.create_database(name, drop_existing=True)
        legacy_dsn, new_dsn = cluster.dsn("bench_legacy"), cluster.dsn("bench_new")
        print(f"[{listings:,}] seeding {listings:,} listings ...", flush=True)
        prep = prepare(legacy_dsn, new_dsn, listings, k)
        planted = prep["planted"]
        print(f"[{listings:,}] seeded in {prep['seed_s']} s; copied {prep['copied']:,} ACTIVE listings to the new "
              f"side in {prep['copy_s']} s; planted {sum(map(len, planted.values()))} differences: "
              + ", ".join(f"{kind}={len(v)}" for kind, v in planted.items()), flush=True)
        settle = SHIPPED.consistency.recheck_delay.total_seconds()
        time.sleep(settle)  # the planted differences are settled ones, not writes in flight (not timed)
        print(f"[{listings:,}] waited recheck_delay ({settle:g} s) after planting, outside the timed runs: the "
              f"planted differences model settled ones, not writes in flight", flush=True)

        ours_cfg = run_ours(legacy_dsn, new_dsn)[1]["settings"]  # warm-up: caches, plans (not timed)
        threads = int(ours_cfg["parallelism"])
        run_reladiff(legacy_dsn, new_dsn, threads)  # warm-up for reladiff too (same caches for both)
        runs = []
        for i in range(repeat):
            ours_s, ours = run_ours(legacy_dsn, new_dsn)
            rel_s, rel = run_reladiff(legacy_dsn, new_dsn, threads)
            ok_ours, ok_rel = ours["found"] == planted, rel["found"] == planted
            runs.append({"ours_s": round(ours_s, 2), "ours_recheck_wait_s": ours["recheck_wait_s"],
                         "ours_settled_by_version": ours["recheck_settled_by_version"],
                         "ours_waited_keys": ours["recheck_waited_keys"],
                         "reladiff_s": round(rel_s, 2), "ours_all_found": ok_ours,
                         "reladiff_all_found": ok_rel})
            print(f"[{listings:,}] run {i + 1}: ours {ours_s:.2f} s (all {k} found: {ok_ours}; {ours['chunks']} "
                  f"chunks, {ours['queries']} queries, {ours['rows_compared']} rows compared, re-check: "
                  f"{ours['recheck_settled_by_version']} final at once by version, {ours['recheck_waited_keys']} "
                  f"waited {ours['recheck_wait_s']:.2f} s) | reladiff "
                  f"{rel_s:.2f} s (all {k} found: {ok_rel}) | ratio reladiff/ours = {rel_s / ours_s:.2f}x",
                  flush=True)
            for who, res in (("ours", ours), ("reladiff", rel)):
                if res["found"] != planted:
                    print(f"  {who} found {res['found']} but planted {planted}", flush=True)
        best_ours = min(r["ours_s"] for r in runs)
        best_rel = min(r["reladiff_s"] for r in runs)
        return {"listings": listings, "in_scope": prep["counts"]["active_listings"], "k": k, "settings": ours_cfg,
                "reladiff_threads": threads, "runs": runs, "best_ours_s": best_ours, "best_reladiff_s": best_rel,
                "ratio_reladiff_over_ours": round(best_rel / best_ours, 2),
                "all_found": all(r["ours_all_found"] and r["reladiff_all_found"] for r in runs)}
    finally:
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/diff_bench.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--listings", type=int, nargs="+", default=[100_000, 1_000_000, 4_000_000])
    ap.add_argument("--k", type=int, default=30, help="planted differences (split in three kinds)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each tool (alternating)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    try:
        import reladiff  # noqa: F401
    except ImportError:
        print("reladiff is not installed: `.venv/bin/pip install reladiff` (benchmark only, not a project "
              "dependency), then run this again.", file=sys.stderr)
        return 2
    print(f"cluster: PostgreSQL default durability (fsync, synchronous_commit, full_page_writes on); "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start (shared machine)", flush=True)
    results = [one_size(n, args.k, args.repeat) for n in args.listings]
    summary = {"durability": "default (PgCluster(durable=True))", "cpus": os.cpu_count(),
               "load_average_at_end": round(os.getloadavg()[0], 1), "sizes": results}
    print(json.dumps(summary, indent=2))
    for r in results:
        print(f"{r['listings']:>10,} listings: ours {r['best_ours_s']:.2f} s, reladiff {r['best_reladiff_s']:.2f} s, "
              f"reladiff/ours {r['ratio_reladiff_over_ours']:.2f}x, re-check waited "
              f"{max(x['ours_recheck_wait_s'] for x in r['runs']):.2f} s, all differences found: {r['all_found']}")
    print(f"load average at end {summary['load_average_at_end']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
