"""The figures the Airflow layer emits as metrics (docs/metrics.md): read from the control schema,
returned as plain ``Metric`` values - no Airflow here, no emitting.

Why names carry their dimensions (``zdm.gate.<gate>.status``) *and* tags: plain StatsD has no tags
(Airflow drops them unless ``[metrics] statsd_influxdb_enabled`` or Datadog is on), so the name must
tell series apart; with tags enabled, Grafana/Prometheus users can also group by ``gate=...``.
Dimension values are made StatsD-safe (``.`` -> ``__``, anything outside ``[A-Za-z0-9_-]`` -> ``_``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from migration_engine import control_schema, sqlfiles, telemetry
from migration_engine.config import MigrationConfig
from migration_engine.telemetry import GATE_STATUS, PREFIX, Metric, part
from migration_engine.telemetry import name as _name

__all__ = ["GATE_STATUS", "PREFIX", "Metric", "backfill", "collect", "part"]


def _rows(cur, name: str, schema: str, **params: Any) -> list[dict[str, Any]]:
    sqlfiles.run(cur, name, {"schema": schema}, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _pct(part_: float, whole: float) -> float | None:
    return None if not whole else 100.0 * part_ / whole


def gates(rows: list[dict], now: datetime) -> list[Metric]:
    out = []
    for r in rows:
        tags = {"gate": r["gate"], "status": r["status"]}
        g = part(r["gate"])
        out.append(Metric(_name("gate", g, "status"), GATE_STATUS.get(r["status"], 4), tags))
        out.append(Metric(_name("gate", g, "age_seconds"), max((now - r["evaluated_at"]).total_seconds(), 0.0),
                          tags))
    return out


backfill = telemetry.backfill_metrics  # also emitted at backfill checkpoints (backfill.engine)


def shadow(rows: list[dict]) -> list[Metric]:
    out = []
    for r in rows:
        e, tags = part(r["entity"]), {"entity": r["entity"]}
        out.append(Metric(_name("shadow", e, "reads_compared"), float(r["reads_compared"]), tags))
        pct = _pct(r["mismatches"], r["reads_compared"])
        if pct is not None:
            out.append(Metric(_name("shadow", e, "mismatch_pct"), pct, tags))
    return out


def paths(rows: list[dict]) -> list[Metric]:
    out = []
    for r in rows:
        tags = {"entity": r["entity"], "operation": r["operation"], "path": r["path"]}
        base = ("path", part(r["entity"]), part(r["operation"]), part(r["path"]))
        out.append(Metric(_name(*base, "requests"), float(r["requests"]), tags))
        pct = _pct(r["errors"], r["requests"])
        if pct is not None:
            out.append(Metric(_name(*base, "error_pct"), pct, tags))
        if r["p95_ms"] is not None:
            out.append(Metric(_name(*base, "p95_ms"), float(r["p95_ms"]), tags))
    return out


def databases(rows: list[dict]) -> list[Metric]:
    out = []
    seen: set[str] = set()
    for r in rows:
        db, tags = r["db"], {"db": r["db"]}
        if db not in seen:
            seen.add(db)
            f = r["figures"]
            values = {
                "connections_pct": (f.get("connections") or {}).get("pct"),
                "connections": (f.get("connections") or {}).get("cluster_clients"),
                "replication_lag_seconds": (f.get("replication") or {}).get("lag_seconds"),
                "database_bytes": f.get("database_bytes"),
                "buffer_hit_pct": (f.get("hit_rates") or {}).get("buffer_hit_pct"),
                "index_hit_pct": (f.get("hit_rates") or {}).get("index_hit_pct"),
                "backup_free_bytes": (f.get("backup_dir") or {}).get("free_bytes"),
            }
            out += [Metric(_name("db", db, k), float(v), tags) for k, v in values.items() if v is not None]
        if r["table_name"] and r["p95_ms"] is not None:
            out.append(Metric(_name("db", db, "table", part(r["table_name"]), "p95_ms"), float(r["p95_ms"]),
                              {**tags, "table": r["table_name"]}))
    return out


def collect(conn, cfg: MigrationConfig, now: datetime) -> list[Metric]:
    """Every metric figure, read in one read-only snapshot of the control schema (legacy database)."""
    schema = cfg.control_schema
    control_schema.require_current(conn, schema)  # refuses clearly until migration_setup has run
    window = {"window_start": now - cfg.perf.metrics_window, "window_end": now + timedelta(minutes=1)}
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "common/set_setting.sql", params={
                "name": "statement_timeout", "value": f"{int(cfg.perf.statement_timeout.total_seconds() * 1000)}ms",
                "is_local": True})
            return (gates(_rows(cur, "perf/metrics_gates.sql", schema), now)
                    + backfill(_rows(cur, "perf/metrics_backfill.sql", schema))
                    + shadow(_rows(cur, "perf/metrics_shadow.sql", schema, **window))
                    + paths(_rows(cur, "perf/app_latency.sql", schema, **window))
                    + databases(_rows(cur, "perf/metrics_latest_samples.sql", schema)))
    finally:
        conn.rollback()
        conn.set_session(readonly=False)
