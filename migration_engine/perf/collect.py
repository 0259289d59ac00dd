"""Read one database's performance figures (``include/sql/perf/*.sql``): reads only, each section
on its own, so a missing extension or privilege costs that section and names why.

Why sections fail separately: a least-privilege migration role may lack ``pg_read_all_stats``, a
managed server may not preload ``pg_stat_statements``, PostgreSQL 15 has no ``pg_stat_io``. The
operator should see every figure that *can* be read and, for the others, "not available: <why>"
- never a failed sample or a 500 on the page.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors

from migration_engine import sqlfiles
from migration_engine.perf.latency import HIDDEN_QUERY, Statement

log = logging.getLogger(__name__)

PG_STAT_IO_VERSION = 160000
EXTENSION = "pg_stat_statements"


@dataclass
class Reading:
    """What one database gave: figures (JSON-able), per-table rows, statements, and what was not available."""

    database_name: str = ""
    server_version_num: int = 0
    figures: dict[str, Any] = field(default_factory=dict)
    tables: list[dict[str, Any]] = field(default_factory=list)
    statements: list[Statement] | None = None  # None: pg_stat_statements not readable here
    unavailable: dict[str, str] = field(default_factory=dict)


def _rows(cur) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _query(conn, name: str, identifiers: dict | None = None, params: dict | None = None) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, name, identifiers, params)
        return _rows(cur)


def _why(exc: psycopg2.Error) -> str:
    text = (exc.pgerror or str(exc)).strip().splitlines()[0] if (exc.pgerror or str(exc)).strip() else ""
    return text.removeprefix("ERROR:").strip() or type(exc).__name__


def _pct(hit: int | None, read: int | None) -> float | None:
    total = (hit or 0) + (read or 0)
    return None if total == 0 else 100.0 * (hit or 0) / total


def read(conn, *, control_schema: str, max_tables: int, statement_timeout_ms: int,
         want_statements: bool = True) -> Reading:
    """Everything this module can read from ``conn``'s database. The session is made read-only and
    autocommit (each statement stands alone: one failing read does not spoil the next)."""
    conn.autocommit = True
    r = Reading()
    with conn.cursor() as cur:
        sqlfiles.run(cur, "common/set_setting.sql",
                     params={"name": "statement_timeout", "value": f"{statement_timeout_ms}ms", "is_local": False})
        sqlfiles.run(cur, "common/set_setting.sql",
                     params={"name": "default_transaction_read_only", "value": "on", "is_local": False})
    server = _query(conn, "perf/server.sql")[0]
    r.database_name = server["database_name"]
    r.server_version_num = int(server["server_version_num"])
    r.figures.update({
        "max_connections": server["max_connections"],
        "reserved_connections": server["reserved_connections"],
        "database_bytes": server["database_bytes"],
        "in_recovery": server["in_recovery"],
    })
    _section(r, "connections", lambda: _connections(conn, r))
    _section(r, "replication", lambda: _replication(conn, r, server["in_recovery"]))
    _section(r, "hit_rates", lambda: _hit_rates(conn, r))
    _section(r, "io", lambda: _io(conn, r))
    _section(r, "tables", lambda: _tables(conn, r, control_schema, max_tables))
    if want_statements:
        _statements(conn, r)
    return r


def _section(r: Reading, name: str, fn) -> None:
    try:
        fn()
    except psycopg2.Error as exc:
        r.unavailable[name] = f"not available: {_why(exc)}"
        log.warning("perf sample of %s: %s not available: %s", r.database_name, name, _why(exc))


def _connections(conn, r: Reading) -> None:
    c = _query(conn, "perf/connections.sql")[0]
    usable = max(int(r.figures["max_connections"]) - int(r.figures["reserved_connections"]), 1)
    r.figures["connections"] = {**c, "usable": usable, "pct": 100.0 * c["cluster_clients"] / usable}


def _replication(conn, r: Reading, in_recovery: bool) -> None:
    if in_recovery:
        lag = _query(conn, "perf/replication_standby.sql")[0]["replay_lag_seconds"]
        r.figures["replication"] = {"role": "standby", "lag_seconds": lag, "replicas": []}
        return
    replicas = _query(conn, "perf/replication_primary.sql")
    lags = [x["replay_lag_seconds"] for x in replicas if x["replay_lag_seconds"] is not None]
    r.figures["replication"] = {"role": "primary", "replicas": replicas,
                                "lag_seconds": max(lags) if lags else (0.0 if replicas else None)}


def _hit_rates(conn, r: Reading) -> None:
    d = _query(conn, "perf/database_stats.sql")[0]
    r.figures["hit_rates"] = {
        "buffer_hit_pct": _pct(d["blks_hit"], d["blks_read"]),
        "index_hit_pct": _pct(d["idx_blks_hit"], d["idx_blks_read"]),
        **{k: d[k] for k in ("blks_hit", "blks_read", "idx_blks_hit", "idx_blks_read", "xact_commit",
                             "xact_rollback", "deadlocks", "temp_bytes", "blk_read_time", "blk_write_time")},
    }


def _io(conn, r: Reading) -> None:
    if r.server_version_num >= PG_STAT_IO_VERSION:
        row = _query(conn, "perf/io_pg16.sql")[0]
        r.figures["io"] = {"source": "pg_stat_io (cluster-wide)", **row}
    else:
        row = _query(conn, "perf/io_pg15.sql")[0]
        r.figures["io"] = {"source": "pg_statio_user_tables + pg_stat_bgwriter (PostgreSQL < 16)", **row}


def _tables(conn, r: Reading, control_schema: str, max_tables: int) -> None:
    rows = _query(conn, "perf/tables.sql", params={"control_schema": control_schema, "max_tables": max_tables})
    for t in rows:
        t["buffer_hit_pct"] = _pct(t["heap_blks_hit"], t["heap_blks_read"])
        t["index_hit_pct"] = _pct(t["idx_blks_hit"], t["idx_blks_read"])
    r.tables = rows


def _statements(conn, r: Reading) -> None:
    ext = _query(conn, "perf/extension.sql")
    if not ext:
        r.unavailable["latency"] = (
            f"not available: the {EXTENSION} extension is not installed in database {r.database_name!r} "
            f"(CREATE EXTENSION {EXTENSION}; the server also needs shared_preload_libraries = '{EXTENSION}')")
        return
    try:
        rows = _query(conn, "perf/statements.sql", {"ext_schema": ext[0]["schema_name"]})
        try:
            reset = _query(conn, "perf/statements_reset.sql", {"ext_schema": ext[0]["schema_name"]})
            r.figures["statements_reset_at"] = reset[0]["stats_reset"].isoformat() if reset else None
        except psycopg2.Error:  # pg_stat_statements < 1.9: no info view; the figures still stand
            r.figures["statements_reset_at"] = None
    except psycopg2.errors.ObjectNotInPrerequisiteState:  # "must be loaded via shared_preload_libraries"
        r.unavailable["latency"] = (
            f"not available: {EXTENSION} is installed in {r.database_name!r} but the server does not load it "
            f"(add it to shared_preload_libraries and restart PostgreSQL)")
        return
    except psycopg2.Error as exc:
        r.unavailable["latency"] = f"not available: reading {EXTENSION} failed: {_why(exc)}"
        return
    hidden = sum(1 for x in rows if x["queryid"] is None or x["query"] == HIDDEN_QUERY)
    if hidden:
        r.figures["statements_hidden"] = hidden
        r.unavailable["latency_partial"] = (
            f"{hidden} statement(s) of other roles have their text hidden (<insufficient privilege>) and "
            f"cannot be attributed to a table: GRANT pg_read_all_stats TO the migration role")
    r.statements = [Statement(int(x["dbid"]), int(x["userid"]), int(x["queryid"]), x["query"] or "",
                              int(x["calls"]), float(x["total_exec_time"]), float(x["stddev_exec_time"] or 0),
                              float(x["min_exec_time"] or 0), float(x["max_exec_time"] or 0))
                    for x in rows if x["queryid"] is not None and x["query"] != HIDDEN_QUERY]


def disk(path: str) -> dict[str, Any]:
    """Free space where the backup directory is (or would be created), on the host that samples.

    A directory that does not exist yet is measured at its nearest existing parent, and says so.
    """
    p = Path(path)
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError as exc:
        return {"path": path, "error": f"not available: {exc}"}
    return {"path": path, "measured_at": str(probe), "exists": p.exists(), "host": os.uname().nodename,
            "free_bytes": usage.free, "total_bytes": usage.total, "free_pct": 100.0 * usage.free / usage.total}
