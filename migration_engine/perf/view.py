"""The performance page's figures: the stored samples (``perf_samples``, ``perf_table_samples``) of
the chart window -> one view model per database (latest figures, per-table latency, series).

``load_perf_view()`` reads the config and the control schema on one read-only connection to the
legacy database (the page never touches the application's tables or pg_stat_statements itself:
the sampler did, on its schedule), ``build`` is pure. Every failure to load is a
``PerfUnavailable`` naming it; a section the sampler could not read is in the model as
"not available: <why>" (the page shows it, it is not an error).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from migration_engine import control, sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.errors import MigrationError

APPLICATION_NAME = "migration-dashboard-performance"
MAX_SAMPLE_ROWS = 5000       # 2 databases x 2,500 samples: 24 h at one a minute, ~8 days at 5 min
MAX_TABLE_ROWS = 100_000
CHART_TABLES = 5             # per-table p95 chart: the busiest tables of the latest sample
STALE_INTERVALS = 3          # the latest sample is older than this many intervals: say so
MAX_POINTS = 300             # chart points per series: a longer window is thinned (the latest is always kept)

LATENCY_NOTES = {
    "pg_stat_statements": (
        "Estimated from pg_stat_statements, not measured: per statement, the calls and time since the previous "
        "sample (its mean latency in the interval) and its standard deviation, clipped to its min/max; each "
        "table's p50/p95/p99 are percentiles of the call-weighted mix of the statements that name it (a join "
        "counts for every table it touches)."),
    "app_stats": (
        "Measured by the application (stats contract, path_stats): the p95 it reported per entity and path over "
        "the interval, shown for the table that path uses; the contract has no p50/p99."),
    "none": "No latency source: see why below.",
}


class PerfUnavailable(MigrationError):
    """The performance page cannot be built (no control schema, database unreachable, bad config)."""


def _rows(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def fetch(conn, cfg: MigrationConfig, now: datetime) -> dict[str, Any]:
    """The samples of the chart window, as plain rows (read-only, one snapshot)."""
    schema = cfg.control_schema
    start = now - cfg.perf.chart_window
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "common/set_setting.sql", params={
                "name": "statement_timeout", "value": f"{int(cfg.perf.statement_timeout.total_seconds() * 1000)}ms",
                "is_local": True})
            if not control.control_schema_exists(conn, schema):
                raise PerfUnavailable(f'control schema "{schema}" does not exist in this database yet; run the '
                                      "migration_setup DAG first")
            sqlfiles.run(cur, "dashboard/table_columns.sql", params={"schema": schema, "table_name": "perf_samples"})
            if not cur.fetchall():
                raise PerfUnavailable(f'control schema "{schema}" has no perf_samples table yet (migration 008): '
                                      "run the migration_setup DAG to upgrade it")
            sqlfiles.run(cur, "perf/history.sql", {"schema": schema},
                         {"window_start": start, "max_rows": MAX_SAMPLE_ROWS})
            samples = _rows(cur)[::-1]  # newest first in SQL (the limit keeps the newest), oldest first here
            sqlfiles.run(cur, "perf/table_history.sql", {"schema": schema},
                         {"window_start": start, "max_rows": MAX_TABLE_ROWS})
            tables = _rows(cur)[::-1]
    finally:
        conn.rollback()
    return {"samples": samples, "tables": tables, "window_start": start}


def _rate(cur: dict, prev: dict | None, key: str, seconds: float) -> float | None:
    if prev is None or seconds <= 0 or cur.get(key) is None or prev.get(key) is None:
        return None
    delta = cur[key] - prev[key]
    return None if delta < 0 else delta / seconds  # negative: the statistics were reset in between


def _interval_pct(cur: dict | None, prev: dict | None, hit: str, read: str) -> float | None:
    if not cur or not prev or any(x.get(k) is None for x in (cur, prev) for k in (hit, read)):
        return None
    h, r = cur[hit] - prev[hit], cur[read] - prev[read]
    if h < 0 or r < 0 or h + r == 0:
        return None
    return 100.0 * h / (h + r)


def _status_pct(pct: float | None, warn: float) -> str:
    if pct is None:
        return "no_data"
    return "critical" if pct >= 95 else "warning" if pct >= warn else "ok"


def thin(items: list, limit: int = MAX_POINTS) -> list:
    """Every k-th item so at most ``limit`` remain, always ending with the last one."""
    if len(items) <= limit:
        return items
    step = -(-len(items) // limit)
    return items[::-1][::step][::-1]


def _database(db: str, samples: list[dict], tables: list[dict], cfg: MigrationConfig,
              now: datetime) -> dict[str, Any]:
    latest = samples[-1]
    figs = latest["figures"]
    prev = samples[-2] if len(samples) > 1 else None
    series = []
    for i, s in enumerate(samples):
        p = samples[i - 1] if i else None
        secs = (s["sampled_at"] - p["sampled_at"]).total_seconds() if p else 0
        f, pf = s["figures"], (p["figures"] if p else {})
        io, pio = f.get("io") or {}, pf.get("io") or {}
        hr, phr = f.get("hit_rates") or {}, pf.get("hit_rates")
        conn_f = f.get("connections") or {}
        series.append({
            "t": s["sampled_at"],
            "connections_pct": conn_f.get("pct"),
            "connections": conn_f.get("cluster_clients"),
            "replication_lag_seconds": (f.get("replication") or {}).get("lag_seconds"),
            "database_bytes": f.get("database_bytes"),
            "buffer_hit_pct": _interval_pct(hr, phr, "blks_hit", "blks_read"),
            "index_hit_pct": _interval_pct(hr, phr, "idx_blks_hit", "idx_blks_read"),
            "reads_per_second": _rate(io, pio if p else None, "reads", secs),
            "writes_per_second": _rate(io, pio if p else None, "writes", secs),
        })
    last = series[-1]
    hit = figs.get("hit_rates") or {}
    by_time: dict[datetime, dict[str, dict]] = {}
    for t in tables:
        by_time.setdefault(t["sampled_at"], {})[t["table_name"]] = t
    latest_tables = sorted(by_time.get(latest["sampled_at"], {}).values(),
                           key=lambda t: (-(t["calls"] or 0), -(t["total_bytes"] or 0), t["table_name"]))
    busiest = [t["table_name"] for t in latest_tables if t["p95_ms"] is not None][:CHART_TABLES]
    conn_f = figs.get("connections") or {}
    repl = figs.get("replication") or {}
    age = (now - latest["sampled_at"]).total_seconds()
    return {
        "db": db,
        "database_name": latest["database_name"],
        "server_version": f"{latest['server_version_num'] // 10000}.{latest['server_version_num'] % 10000}",
        "sampled_at": latest["sampled_at"],
        "age_seconds": age,
        "stale": age > STALE_INTERVALS * cfg.perf.interval.total_seconds(),
        "samples": len(samples),
        "latency_source": latest["latency_source"],
        "latency_note": LATENCY_NOTES[latest["latency_source"]],
        "latency_basis": (figs.get("latency_interval") or {}).get("basis"),
        "unavailable": latest["unavailable"],
        "connections": {
            "clients": conn_f.get("cluster_clients"), "usable": conn_f.get("usable"), "pct": conn_f.get("pct"),
            **{k: conn_f.get(k) for k in ("database_clients", "active", "idle_in_transaction", "waiting_on_locks")},
            "max_connections": figs.get("max_connections"),
            "status": _status_pct(conn_f.get("pct"), cfg.perf.connections_warn_pct),
            "warn_pct": cfg.perf.connections_warn_pct,
        },
        "replication": {"role": repl.get("role"), "lag_seconds": repl.get("lag_seconds"),
                        "replicas": repl.get("replicas") or []},
        "database_bytes": figs.get("database_bytes"),
        "hit_rates": {
            **{k: last[k] if last[k] is not None else hit.get(k) for k in ("buffer_hit_pct", "index_hit_pct")},
            "basis": ("since the previous sample" if last["buffer_hit_pct"] is not None
                      else "since the statistics were last reset"),
        },
        "io": {**(figs.get("io") or {}), "reads_per_second": last["reads_per_second"],
               "writes_per_second": last["writes_per_second"]},
        "backup_dir": figs.get("backup_dir"),
        "tables": latest_tables,
        "series": thin(series),
        "table_series": {name: [(by_time.get(s["sampled_at"], {}).get(name) or {}).get("p95_ms")
                                for s in thin(samples)] for name in busiest},
        "previous_sampled_at": prev["sampled_at"] if prev else None,
    }


def build(raw: dict[str, Any], cfg: MigrationConfig, now: datetime) -> dict[str, Any]:
    by_db: dict[str, list[dict]] = {}
    for s in raw["samples"]:
        by_db.setdefault(s["db"], []).append(s)
    tables_by_db: dict[str, list[dict]] = {}
    for t in raw["tables"]:
        tables_by_db.setdefault(t["db"], []).append(t)
    order = ("legacy",) if cfg.same_database else ("legacy", "new")
    databases = [_database(db, by_db[db], tables_by_db.get(db, []), cfg, now) for db in order if by_db.get(db)]
    return {
        "migration": cfg.name,
        "generated_at": now,
        "window_start": raw["window_start"],
        "interval_seconds": cfg.perf.interval.total_seconds(),
        "retention_seconds": cfg.perf.retention.total_seconds(),
        "same_database": cfg.same_database,
        "databases": databases,
        "missing": [db for db in order if not by_db.get(db)],
        "note": "" if databases else (
            "no performance samples in the chart window yet: unpause the migration_db_performance_sampler DAG "
            f"(it samples every {cfg.perf.interval}) or trigger it once"),
    }


def load_perf_view(now: datetime | None = None) -> dict[str, Any]:
    """Read the config and the stored samples; any failure becomes a PerfUnavailable naming it."""
    from migration_engine.dashboard.view import read_control

    now = now or datetime.now(UTC)
    cfg, raw = read_control(PerfUnavailable, lambda cfg: f"the performance samples in {cfg.control_schema!r}",
                            APPLICATION_NAME, lambda conn, cfg: fetch(conn, cfg, now))
    return build(raw, cfg, now)


__all__ = ["PerfUnavailable", "build", "fetch", "load_perf_view"]
