"""migration_db_performance_sampler: the seed's "Database Performance Dashboard", sampled.

Every `perf.interval` (default 5 min; catch-up off, one run at a time) it

1. **sample** - reads both databases (one with `same_database`): per-table query latency
   p50/p95/p99 (estimated from `pg_stat_statements`, or the application's p95 from `path_stats`),
   connections vs `max_connections`, replication lag, database and table sizes, free disk of
   `backup.dir`, I/O, buffer and index hit rates; stores them in `migration_control.perf_samples`
   / `perf_table_samples` (history, kept `perf.retention`). A figure that cannot be read (no
   extension, no privilege) is stored as "not available: <why>" and the rest is still sampled.
2. **emit_metrics** - sends gate status, backfill rows/s and progress, shadow mismatch %, error
   rate by path and the database figures through Airflow's metrics (docs/metrics.md).

The page: Browse -> Migration DB performance (`/migration/dashboard/performance`). Unpause this DAG
after `migration_setup`. **Params**: `dry_run` (read and log the exact SQL it would send; store
nothing). See docs/performance.md.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from migration_engine.airflow import perf
from migration_engine.airflow.dags import config, migration_dag


@migration_dag(
    "migration_db_performance_sampler",
    doc_md=__doc__,
    schedule=config().perf.interval,
    tags_=("monitoring", "performance", "scheduled"),
    params={
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Read both databases and log the statements a sample would send; store nothing."),
    },
)
def migration_db_performance_sampler():
    @task
    def sample() -> dict:
        return perf.sample()

    @task
    def emit_metrics() -> dict:
        return perf.emit_metrics()

    sample() >> emit_metrics()


migration_db_performance_sampler()
