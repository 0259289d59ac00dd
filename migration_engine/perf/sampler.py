"""One performance sample of both databases, as a step (``steps.Step``, run by ``run_steps``).

* **apply** - reads both databases (``collect.read``: reads only, on their own read-only
  connections), derives per-table latency (``latency``), then writes one row per database to
  ``perf_samples`` with its tables in ``perf_table_samples``, remembers the pg_stat_statements
  counters for the next sample and deletes what is older than ``perf.retention`` - all in one
  transaction (``ex.action`` with the exact SQL): a sample is stored whole or not at all.
  Idempotent per DAG run: a retried task finds this run's sample and sends nothing.
* **plan** (dry run) - the same reads, and the exact statements it would send; nothing is written.
* **verify** - this run's sample is stored for every sampled database.
* **revert** - none (the default refuses): a sample changes nothing but its own history.

With ``same_database`` both sides live in one database, which is sampled once (as ``legacy``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_engine import control_schema, sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.ddl import DdlExecutor
from migration_engine.perf import collect, latency
from migration_engine.steps import Step

log = logging.getLogger(__name__)

APPLICATION_NAME = "zdm-perf-sampler"
Connector = Callable[[str], AbstractContextManager]


def default_connector(cfg: MigrationConfig) -> Connector:
    from migration_engine import db

    return lambda side: db.connection(cfg.conn_id(side), application_name=APPLICATION_NAME)


def sides(cfg: MigrationConfig) -> tuple[str, ...]:
    return ("legacy",) if cfg.same_database else ("legacy", "new")


def entity_tables(cfg: MigrationConfig, side: str) -> dict[tuple[str, str], str]:
    """(entity, path) -> ``schema.table`` on ``side``: the old path reads the old table (legacy), the
    new path the new table (new; the same database with ``same_database``)."""
    out = {}
    for name, e in cfg.entities.items():
        if side == "legacy":
            out[(name, "old")] = f"{e.old_table.schema_name}.{e.old_table.table}"
        if side == "new" or cfg.same_database:
            out[(name, "new")] = f"{e.new_table.schema_name}.{e.new_table.table}"
    return out


def _minutes(td: timedelta) -> str:
    return f"{td.total_seconds() / 60:g} min"


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class PerfSample(Step):
    step_id = "perf.sample"
    phase = "perf"
    title = "database performance sample (both databases)"
    audited = False  # telemetry: the sample is its own rows in perf_samples, not a change to audit

    def __init__(self, cfg: MigrationConfig, *, connect: Connector | None = None,
                 now: Callable[[], datetime] | None = None):
        self.cfg = cfg
        self.connect = connect or default_connector(cfg)
        self.now = now or (lambda: datetime.now(UTC))

    @property
    def schema(self) -> str:
        return self.cfg.control_schema

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        return {}

    def _of_run(self, ex: DdlExecutor) -> list[dict]:
        run_id = ex.context.get("run_id")
        if not run_id:
            return []
        return ex.query_dicts("perf/sample_of_run.sql", {"schema": self.schema},
                              {"dag_id": ex.context.get("dag_id"), "run_id": run_id})

    # -- reading --------------------------------------------------------------------------------
    def read(self, side: str) -> collect.Reading:
        """One database's figures; an unreachable database is a sample that says so (the other one's
        figures are still stored, and the page shows why this one has none)."""
        import psycopg2

        from migration_engine.db import MissingConnectionError

        p = self.cfg.perf
        try:
            with self.connect(side) as conn:
                return collect.read(conn, control_schema=self.schema, max_tables=p.max_tables,
                                    statement_timeout_ms=int(p.statement_timeout.total_seconds() * 1000),
                                    want_statements=p.latency_source != "app_stats")
        except (MissingConnectionError, psycopg2.OperationalError) as exc:
            log.warning("perf sample: the %s database cannot be read: %s", side, exc)
            why = f"not available: {str(exc).strip() or type(exc).__name__}"
            return collect.Reading(database_name=self.cfg.conn_id(side), unavailable={"connection": why})

    def rows(self, ex: DdlExecutor, side: str, reading: collect.Reading, at: datetime) -> dict[str, Any]:
        """The statement parameters for one database's sample (latency derived here)."""
        p = self.cfg.perf
        names = [t["table_name"] for t in reading.tables]
        per_table: dict[str, latency.TableLatency] = {}
        counters: list[latency.Statement] = []
        source = "none"
        previous_at = None
        if reading.statements is not None:
            prev_rows = ex.query_dicts("perf/counters_get.sql", {"schema": self.schema}, {"db": side})
            previous = {(int(r["dbid"]), int(r["userid"]), int(r["queryid"])): (int(r["calls"]),
                                                                               float(r["total_exec_ms"]))
                        for r in prev_rows}
            previous_at = max((r["updated_at"] for r in prev_rows), default=None)
            per_table, counters = latency.from_statements(reading.statements, previous, names)
            source = "pg_stat_statements"
            reading.figures["latency_interval"] = {
                "since": previous_at.isoformat() if previous_at else reading.figures.get("statements_reset_at"),
                "basis": "since the previous sample" if previous_at else "since pg_stat_statements was last reset",
            }
        elif p.latency_source != "pg_stat_statements":
            rows = ex.query_dicts("perf/app_latency.sql", {"schema": self.schema},
                                  {"window_start": at - p.interval, "window_end": at + timedelta(minutes=1)})
            per_table = latency.app_table_latency(rows, entity_tables(self.cfg, side))
            source = "app_stats"
            reading.figures["latency_interval"] = {
                "since": (at - p.interval).isoformat(),
                "basis": f"the application's path_stats over the last {_minutes(p.interval)}"}
            if per_table:
                reading.unavailable.pop("latency", None)  # measured by the app instead: nothing is missing
            else:
                why = reading.unavailable.get("latency", "not available: pg_stat_statements is not used "
                                                         "(perf.latency_source: app_stats)")
                reading.unavailable["latency"] = (
                    f"{why}; and the application reported no path_stats for this database's tables in the last "
                    f"{_minutes(p.interval)} (the fallback)")
                source = "none"
        tables: dict[str, dict[str, Any]] = {}
        for t in reading.tables:
            tables[t["table_name"]] = {k: t[k] for k in ("table_name", "total_bytes", "live_rows", "seq_scans",
                                                         "index_scans", "buffer_hit_pct", "index_hit_pct")}
        for name, lat in per_table.items():
            row = tables.setdefault(name, {"table_name": name})
            row.update({"calls": lat.calls, "statements": lat.statements, "mean_ms": lat.mean_ms,
                        "p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "p99_ms": lat.p99_ms})
        if side == "legacy":
            reading.figures["backup_dir"] = collect.disk(self.cfg.backup.dir)
        reading.figures["same_database"] = self.cfg.same_database
        return {
            "sample": {"db": side, "sampled_at": at, "database_name": reading.database_name,
                       "server_version_num": reading.server_version_num, "figures": _json(reading.figures),
                       "unavailable": _json(reading.unavailable), "latency_source": source,
                       "dag_id": ex.context.get("dag_id"), "run_id": ex.context.get("run_id"),
                       "tables": _json(list(tables.values()))},
            "counters": _json([{"dbid": s.dbid, "userid": s.userid, "queryid": s.queryid, "calls": s.calls,
                                "total_exec_ms": s.total_ms} for s in counters]) if counters else None,
            "summary": f"{side} ({reading.database_name}): {len(tables)} tables, latency from {source}"
                       + (f", not available: {', '.join(sorted(reading.unavailable))}" if reading.unavailable else ""),
        }

    # -- the step -------------------------------------------------------------------------------
    def apply(self, ex: DdlExecutor) -> list[str]:
        control_schema.require_current(ex.conn, self.schema)  # 008's tables: refuse clearly before reading
        done = self._of_run(ex)
        if done:
            return [f"this run already sampled {', '.join(r['db'] for r in done)} at {done[0]['sampled_at']}"]
        at = self.now()
        prepared = [self.rows(ex, side, self.read(side), at) for side in sides(self.cfg)]
        ids = {"schema": self.schema}
        statements: list[tuple[str, dict]] = []
        for part in prepared:
            statements.append(("perf/sample_insert.sql", part["sample"]))
            if part["counters"]:
                statements.append(("perf/counters_upsert.sql", {"db": part["sample"]["db"], "sampled_at": at,
                                                                "counters": part["counters"]}))
        keep = {"sampled_at": at, "retention_seconds": self.cfg.perf.retention.total_seconds()}
        statements += [("perf/retention_samples.sql", keep), ("perf/retention_counters.sql", keep)]
        text = "\n".join(ex.render(name, ids, params) + ";" for name, params in statements)

        def write() -> None:
            conn = ex.conn
            conn.autocommit = False
            try:
                with conn.cursor() as cur:
                    for name, params in statements:
                        sqlfiles.run(cur, name, ids, params)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                conn.autocommit = True

        ex.ensure_timeouts()  # lock_timeout / statement_timeout for the write, as for every step
        ex.action(text, write)
        notes = [p["summary"] for p in prepared]
        for n in notes:
            log.info("perf sample: %s", n)
        return notes

    def problems(self, ex: DdlExecutor) -> list[str]:
        if not ex.context.get("run_id"):
            return []
        found = {r["db"] for r in self._of_run(ex)}
        return [f"no performance sample of the {side} database stored for run {ex.context['run_id']}"
                for side in sides(self.cfg) if side not in found]


def perf_steps(cfg: MigrationConfig) -> list[Step]:
    return [PerfSample(cfg)]
