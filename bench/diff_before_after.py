"""The integer-key diff before and after a change, same data, same run (issue 12: must not get slower).

    .venv/bin/python bench/diff_before_after.py [--ref 3e79c7c] [--listings 300000] [--k 30] [--repeat 3]

Exports the engine as it was at ``--ref`` (``git archive``) next to the checkout, starts one
throwaway PostgreSQL cluster, seeds it once exactly as ``bench/diff_bench.py`` does (demo data, a
correct copy of the ACTIVE listings, K planted differences), then times ``diff_entity`` of the
listings (an integer key) with the project config, alternating before / after, each run in its own
Python process importing the engine (and its SQL files) of that tree. Both must find exactly the
planted keys. Prints each time, the best of each and the ratio; never asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.diff_bench import prepare  # noqa: E402
from devtools.pgcluster import PgCluster, free_port  # noqa: E402

_ONE_RUN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from bench.diff_bench import run_ours
import migration_engine
assert migration_engine.__file__.startswith(sys.argv[1]), migration_engine.__file__
s, r = run_ours(sys.argv[2], sys.argv[3])
print(json.dumps({"s": s, "found": r["found"], "queries": r["queries"], "chunks": r["chunks"]}))
"""


def _export(ref: str, dest: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def _time(tree: Path, legacy_dsn: str, new_dsn: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _ONE_RUN, str(tree), legacy_dsn, new_dsn], check=True,
                         capture_output=True, text=True, cwd=tree).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/diff_before_after.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default="3e79c7c", help="the 'before' commit (default: before issue 12's key work)")
    ap.add_argument("--listings", type=int, default=300_000)
    ap.add_argument("--k", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="zdm-diff-ba-"))
    os.chmod(workdir, 0o755)
    before = workdir / "before"
    before.mkdir()
    _export(args.ref, before)
    cluster = PgCluster(workdir / "pgdata", free_port())
    cluster.start()
    try:
        for name in ("bench_legacy", "bench_new"):
            cluster.create_database(name, drop_existing=True)
        legacy_dsn, new_dsn = cluster.dsn("bench_legacy"), cluster.dsn("bench_new")
        prep = prepare(legacy_dsn, new_dsn, args.listings, args.k)
        planted = prep["planted"]
        print(f"{args.listings:,} listings, {prep['copied']:,} in scope, {args.k} planted; before = {args.ref}",
              flush=True)
        for tree in (before, ROOT):  # warm-up (caches, visibility map), not timed
            _time(tree, legacy_dsn, new_dsn)
        times: dict[str, list[float]] = {"before": [], "after": []}
        for i in range(args.repeat):
            for label, tree in (("before", before), ("after", ROOT)) if i % 2 == 0 else \
                    (("after", ROOT), ("before", before)):
                r = _time(tree, legacy_dsn, new_dsn)
                ok = r["found"] == planted
                times[label].append(r["s"])
                print(f"run {i + 1} {label:6s}: {r['s']:.2f} s, {r['chunks']} chunks, {r['queries']} queries, "
                      f"all planted keys found: {ok}", flush=True)
                if not ok:
                    print(f"  found {r['found']}\n  planted {planted}", flush=True)
        b, a = min(times["before"]), min(times["after"])
        print(json.dumps({"listings": args.listings, "ref": args.ref, "before_s": times["before"],
                          "after_s": times["after"], "best_before_s": round(b, 2), "best_after_s": round(a, 2),
                          "after_over_before": round(a / b, 3), "cpus": os.cpu_count()}, indent=2))
    finally:
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
