"""CLI: plan, run (resume) or inspect a backfill outside Airflow - same engine, same checkpoints.

    python -m migration_engine.backfill plan   --legacy-dsn postgresql://... --new-dsn postgresql://... \
        [--entity listings] [--parallelism 4] [--restart] [--dry-run]
    python -m migration_engine.backfill run    --legacy-dsn ... --new-dsn ... [--entity listings] \
        [--range 0 --range 1] [--workers 2] [--batch-size 5000] [--max-rows-per-second 20000] \
        [--target-batch-duration 500ms] [--pause-check-interval 2s]
    python -m migration_engine.backfill status --legacy-dsn ... [--entity listings]

``run`` resumes the entity's open pass (planning one if there is none), copies its unfinished
ranges (``--range`` limits which) and closes the pass when every range is done. SIGTERM/SIGINT
stop after the current batch (the checkpoint is committed); SIGKILL loses at most the batch in
flight, which the next run redoes idempotently. Without ``--legacy-dsn``/``--new-dsn`` the Airflow
connections named in the config are used. The override flags name keys of the config's ``backfill``
section and are validated like it. ``plan`` and ``run`` first run the entities' preflight, as the
phase-2 DAG does: a config that does not match the databases (a missing table or column, a key or
value type that cannot work, an empty lookup) exits 2 naming every problem, with nothing written.
Prints one JSON document; exit 0 = done, 3 = stopped or unfinished, 2 = bad input, 1 = error
(e.g. a database that cannot be reached, named in the log line).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg2
import psycopg2.errors

from migration_engine import preflight
from migration_engine.backfill import store
from migration_engine.backfill.engine import RangeWorker
from migration_engine.backfill.plan import plan_entity
from migration_engine.backfill.runs import finish_run, status
from migration_engine.backfill.settings import BackfillError, backfill_settings, budget_overrides
from migration_engine.config import Backfill, ConfigError, MigrationConfig, load_config
from migration_engine.control_schema import ControlSchemaError

log = logging.getLogger("migration_engine.backfill")


def _connector(dsn: str | None, conn_id: str) -> Callable[[], Any]:
    if dsn:
        return lambda: psycopg2.connect(dsn, connect_timeout=10)

    def via_airflow():
        from migration_engine import db

        return db.connect(conn_id, application_name="migration-backfill")

    return via_airflow


# Flags that override a key of the config's `backfill` section (flag --a-b -> key a_b).
OVERRIDE_FLAGS = ("batch_size", "min_batch_size", "max_batch_size", "max_rows_per_second", "parallelism",
                  "target_batch_duration", "pause_check_interval")


def _duration(text: str) -> float | str:
    """A duration flag: plain seconds (``0.5``) or with a unit like the config (``500ms``, ``2s``)."""
    try:
        return float(text)
    except ValueError:
        return text  # validated (and named in the error) by the config model


def _settings(cfg: MigrationConfig, args: argparse.Namespace) -> Backfill:
    budget = budget_overrides({"latency_budget_pct": args.latency_budget_pct,
                               "replica_lag_budget_seconds": args.replica_lag_budget_seconds,
                               "app_p95_ms": args.app_p95_ms})
    return backfill_settings(cfg, **{k: getattr(args, k) for k in OVERRIDE_FLAGS}, throttle=budget)


def _entities(cfg: MigrationConfig, args: argparse.Namespace) -> list[str]:
    names = args.entity or list(cfg.entities)
    unknown = [e for e in names if e not in cfg.entities]
    if unknown:
        raise BackfillError(f"entity {unknown} not in the config; known: {sorted(cfg.entities)}")
    return names


def _preflight(cfg: MigrationConfig, legacy, new, entities: list[str]) -> None:
    """The checks the phase-2 DAG runs before its plan (tables, columns, key and value types, lookups),
    so the CLI refuses a config that does not match the databases before anything is written."""
    checked = preflight.check_or_raise(cfg, legacy, new, parts=(preflight.ENTITIES,), entities=entities)
    log.info("preflight: %d names and types checked for %s: the config matches the databases", checked, entities)


def cmd_plan(cfg, args, legacy_connect, new_connect) -> tuple[int, dict]:
    s = _settings(cfg, args)
    entities = _entities(cfg, args)
    legacy, new = legacy_connect(), new_connect()
    try:
        _preflight(cfg, legacy, new, entities)
        plans = [plan_entity(legacy, new, cfg, e, s, restart=args.restart, dry_run=args.dry_run, actor="cli").as_dict()
                 for e in entities]
    finally:
        legacy.close()
        new.close()
    return 0, {"plans": plans}


def cmd_run(cfg, args, legacy_connect, new_connect, stop: threading.Event) -> tuple[int, dict]:
    s = _settings(cfg, args)
    out: dict[str, Any] = {"entities": {}}
    code = 0
    entities = _entities(cfg, args)
    legacy, new = legacy_connect(), new_connect()
    try:
        _preflight(cfg, legacy, new, entities)
    finally:
        legacy.close()
        new.close()
    for entity in entities:
        legacy, new = legacy_connect(), new_connect()
        try:
            plan = plan_entity(legacy, new, cfg, entity, s, restart=args.restart, actor="cli")
        finally:
            new.close()
        jobs = [j for j in plan.jobs if j.status != "done" and (not args.range or j.range_no in args.range)]
        share = max(1, min(args.workers, len(jobs)))

        def work(job, entity=entity, share=share):
            return RangeWorker(cfg, entity, job.run_id, job.range_no, s, legacy_connect, new_connect,
                               share=share, actor="cli", should_stop=stop.is_set).run().as_dict()

        with ThreadPoolExecutor(max_workers=share) as pool:
            results = list(pool.map(work, jobs))
        try:
            report = finish_run(legacy, cfg.control_schema, plan.run_id, actor="cli") if plan.run_id else {}
        except BackfillError as exc:
            log.warning("%s", exc)
            report = status(legacy, cfg.control_schema, plan.run_id)
            code = 3
        finally:
            legacy.close()
        out["entities"][entity] = {"plan_warnings": plan.warnings, "resumed": plan.resumed, "ranges": results,
                                   "pass": {k: v for k, v in report.items() if k != "ranges"}}
    return code, out


def cmd_status(cfg, args, legacy_connect) -> tuple[int, dict]:
    legacy = legacy_connect()
    try:
        out = {}
        for entity in _entities(cfg, args):
            try:
                run = store.open_run(legacy, cfg.control_schema, entity)
            except psycopg2.errors.UndefinedTable:
                legacy.rollback()
                return 0, {"status": "no backfill has been planned in this database yet"}
            legacy.commit()
            out[entity] = status(legacy, cfg.control_schema, run.id) if run else {"status": "no open pass"}
    finally:
        legacy.close()
    return 0, out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m migration_engine.backfill", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["plan", "run", "status"])
    ap.add_argument("--legacy-dsn", help="legacy database (holds the control schema); default: the Airflow connection")
    ap.add_argument("--new-dsn", help="new database; default: the Airflow connection from the config")
    ap.add_argument("--config", help="migration config (default: $MIGRATION_CONFIG or include/migration.yaml)")
    ap.add_argument("--entity", action="append", help="entity to backfill (repeatable; default: all)")
    ap.add_argument("--range", action="append", type=int, help="only these range numbers (repeatable)")
    ap.add_argument("--workers", type=int, default=1, help="ranges copied in parallel threads (run)")
    ap.add_argument("--restart", action="store_true", help="cancel the open pass and plan a new one")
    ap.add_argument("--dry-run", action="store_true", help="plan only: print the ranges and the SQL")
    ap.add_argument("--parallelism", type=int, help="number of key ranges in a new plan")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--min-batch-size", type=int)
    ap.add_argument("--max-batch-size", type=int)
    ap.add_argument("--target-batch-duration", "--target-batch-seconds", dest="target_batch_duration",
                    type=_duration, help="e.g. 500ms, 2s or seconds (backfill.target_batch_duration)")
    ap.add_argument("--max-rows-per-second", type=int)
    ap.add_argument("--pause-check-interval", "--pause-check-seconds", dest="pause_check_interval",
                    type=_duration, help="e.g. 200ms, 5s or seconds (backfill.pause_check_interval)")
    ap.add_argument("--latency-budget-pct", type=float,
                    help="latency-budget controller on with this budget over the baseline; 0 = off "
                         "(backfill.throttle.budget)")
    ap.add_argument("--replica-lag-budget-seconds", type=float,
                    help="replica lag the controller aims under (backfill.throttle.budget.max_replication_lag)")
    ap.add_argument("--app-p95-ms", type=float,
                    help="the application's p95 (ms) as your APM shows it: each probe may rise the budget's %% of "
                         "it (backfill.throttle.budget.app_p95_ms, probe_allowance app_p95)")
    ap.add_argument("--log-level", default="INFO")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cfg = load_config(args.config)
        legacy_connect = _connector(args.legacy_dsn, cfg.connections.legacy)
        new_connect = _connector(args.new_dsn or (args.legacy_dsn if cfg.same_database else None), cfg.new_conn_id)
        if args.command == "plan":
            code, out = cmd_plan(cfg, args, legacy_connect, new_connect)
        elif args.command == "run":
            code, out = cmd_run(cfg, args, legacy_connect, new_connect, stop)
            if stop.is_set():
                code = 3
        else:
            code, out = cmd_status(cfg, args, legacy_connect)
    except (ConfigError, BackfillError, ControlSchemaError) as exc:
        log.error("%s", exc)
        return 2
    except psycopg2.OperationalError as exc:
        log.error("cannot reach a database: %s", str(exc).strip())
        return 1
    print(json.dumps(out, indent=2, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
