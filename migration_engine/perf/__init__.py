"""The database performance view (seed: "Monitoring and Alerts -> Database Performance Dashboard")
and the figures the metrics emitter sends (docs/performance.md, docs/metrics.md).

* ``collect``  - reads one database's figures (``include/sql/perf``), section by section: what
  cannot be read (no extension, no privilege, an older server) is "not available: <why>".
* ``latency``  - per-table p50/p95/p99 estimated from pg_stat_statements counters (pure), or the
  application's measured p95 from the stats contract.
* ``sampler``  - ``PerfSample``, the step the ``migration_db_performance_sampler`` DAG runs: one
  sample of both databases into the control schema (history; ``perf.retention``).
* ``view``     - the performance page's view model, read from that history.
* ``page``     - the page's HTML (its own CSS: light and dark).
* ``figures``  - the gate / backfill / shadow / path / database figures the Airflow layer emits as
  metrics (``migration_engine/airflow/metrics.py``).
"""

# Routes of the page, relative to the dashboard plugin's prefix (cheap to import: the plugin module
# and every task process import this package).
PAGE_PATH = "/dashboard/performance"
DATA_PATH = "/dashboard/performance/data"
UI_ROUTE = "migration-db-performance"
