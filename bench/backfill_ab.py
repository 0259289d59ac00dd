"""A/B: backfill rows/s of two versions of the engine on the same data, in one run, interleaved.

    .venv/bin/python bench/backfill_ab.py [--base HEAD~1] [--listings 300000] [--rounds 3] [--json out.json]

Why: a change to the backfill's inner loop (e.g. keys of any type instead of integers only) must not
slow the integer-key path. Comparing against a number measured on another day says little on a
shared machine, so this runs both versions back to back on one throwaway cluster and one seeded
data set: ``--base`` (a git revision, exported with ``git archive`` into a temp dir) and the
working tree, alternating A B A B ... for ``--rounds`` rounds, target table emptied before each
run, each version with its own control schema (their control-schema versions may differ). Each run
is a subprocess that imports the engine from its own tree and times plan + all ranges (default
config, ``--parallelism`` ranges in threads, no rate cap, no application load). Prints each run and
the median rows/s per version and their ratio. Never asserts: the machine decides the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, threading, time
src, legacy_dsn, new_dsn, schema, parallelism = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
sys.path.insert(0, src)
import psycopg2, yaml
from pathlib import Path
from migration_engine import control
from migration_engine.backfill import RangeWorker, backfill_settings, plan_entity
from migration_engine.config import parse_config
import migration_engine
assert migration_engine.__file__.startswith(src), (migration_engine.__file__, src)
raw = yaml.safe_load((Path(src) / "include" / "migration.yaml").read_text())
raw["control_schema"] = schema
cfg = parse_config(raw)
conn = psycopg2.connect(legacy_dsn)
control.ensure_control_schema(conn, schema)
conn.close()
s = backfill_settings(cfg, parallelism=parallelism)
started = time.perf_counter()
legacy, new = psycopg2.connect(legacy_dsn), psycopg2.connect(new_dsn)
plan = plan_entity(legacy, new, cfg, "listings", s, restart=True, actor="bench")
legacy.close(); new.close()
results = [None] * len(plan.jobs)
def work(i, job):
    results[i] = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lambda: psycopg2.connect(legacy_dsn),
                             lambda: psycopg2.connect(new_dsn), share=len(plan.jobs), actor="bench").run()
threads = [threading.Thread(target=work, args=(i, j)) for i, j in enumerate(plan.jobs)]
[t.start() for t in threads]; [t.join() for t in threads]
elapsed = time.perf_counter() - started
rows = sum(r.rows_read for r in results)
print(json.dumps({"rows": rows, "seconds": elapsed, "rows_per_second": rows / elapsed}))
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def export(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (git archive: leaves the repository and its worktrees alone)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="HEAD~1", help="git revision of version A (B = the working tree)")
    ap.add_argument("--listings", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parallelism", type=int, default=2)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    import psycopg2

    from devtools import demo_data
    from devtools.pgcluster import PgCluster, free_port

    workdir = Path(tempfile.mkdtemp(prefix="zdm-ab-"))
    os.chmod(workdir, 0o755)
    base_src = export(args.base, workdir / "base")
    versions = {"A": (f"base {args.base}", str(base_src), "migration_control_a"),
                "B": ("working tree", str(ROOT), "migration_control_b")}
    cluster = PgCluster(workdir / "pgdata", free_port())
    cluster.start()
    out: dict = {"listings": args.listings, "base": args.base, "runs": []}
    try:
        for name in ("breederhq", "marketplace"):
            cluster.create_database(name, drop_existing=True)
        legacy_dsn, new_dsn = cluster.dsn("breederhq"), cluster.dsn("marketplace")
        counts = demo_data.build(legacy_dsn, new_dsn, listings=args.listings)
        log(f"seeded {counts['listings']:,} listings ({counts['active_listings']:,} in scope)")
        for rnd in range(args.rounds):
            for v in ("A", "B") if rnd % 2 == 0 else ("B", "A"):
                label, src, schema = versions[v]
                conn = psycopg2.connect(new_dsn)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("TRUNCATE marketplace.service_listings")
                    cur.execute("CHECKPOINT")
                conn.close()
                proc = subprocess.run([sys.executable, "-c", WORKER, src, legacy_dsn, new_dsn, schema,
                                       str(args.parallelism)], capture_output=True, text=True, cwd=src)
                if proc.returncode != 0:
                    raise SystemExit(f"version {v} ({label}) failed:\n{proc.stderr[-4000:]}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                out["runs"].append({"version": v, "round": rnd, **r})
                log(f"round {rnd + 1} {v} ({label}): {r['rows']:,} rows in {r['seconds']:.2f}s = "
                    f"{r['rows_per_second']:,.0f} rows/s")
        med = {v: statistics.median(r["rows_per_second"] for r in out["runs"] if r["version"] == v) for v in "AB"}
        out["median_rows_per_second"] = med
        out["ratio_b_over_a"] = med["B"] / med["A"]
        print(f"\n=== backfill A/B, {counts['active_listings']:,} in-scope rows, {args.rounds} rounds ===")
        for v in "AB":
            print(f"  {v} {versions[v][0]:<28} median {med[v]:>10,.0f} rows/s")
        print(f"  B / A = {out['ratio_b_over_a']:.1%}")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
