"""Consistency run history in the control schema (legacy database).

``consistency_runs`` (one row per run: kind ``diff`` for phase 3, ``full`` = diff + suites for
phase 4 and the hourly run; status; failed checks; summary; Data Docs path),
``consistency_check_results`` (one row per check) and ``consistency_findings`` (the offending keys).
Phase 5 asks :func:`last_consistency_run` whether consistency passed recently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_engine import control_schema, sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.consistency.results import CheckResult

_FINDINGS_BATCH = 500


def _commit(conn, fn):
    try:
        out = fn()
        conn.commit()
        return out
    except Exception:
        conn.rollback()
        raise


def start_run(conn, schema: str, *, kind: str, dag_id: str | None, run_id: str | None,
              retention: timedelta | None = None) -> int:
    """Insert a 'running' run (and drop history older than ``retention``); returns its id."""
    control_schema.require_current(conn, schema)  # migration_setup creates/upgrades it

    def go() -> int:
        with conn.cursor() as cur:
            if retention is not None:
                sqlfiles.run(cur, "consistency/retention_delete.sql", {"schema": schema},
                             {"retention_seconds": retention.total_seconds()})
            sqlfiles.run(cur, "consistency/run_insert.sql", {"schema": schema},
                         {"kind": kind, "dag_id": dag_id, "run_id": run_id})
            return int(cur.fetchone()[0])

    return _commit(conn, go)


def record_check(conn, schema: str, run_pk: int, result: CheckResult, *, max_keys: int) -> None:
    """Store one check's result and its findings (replacing a previous attempt's)."""
    def go() -> None:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "consistency/check_result_upsert.sql", {"schema": schema}, {
                "run_pk": run_pk, "check_name": result.name, "check_kind": result.kind, "status": result.status,
                "old_count": result.old_count, "new_count": result.new_count,
                "counts": json.dumps(result.counts), "sample": json.dumps(result.sample(max_keys), default=str),
                "message": result.message, "duration_s": result.duration_s})
            sqlfiles.run(cur, "consistency/findings_delete.sql", {"schema": schema},
                         {"run_pk": run_pk, "check_name": result.name})
            rows = [f.as_row() for f in result.findings]
            for start in range(0, len(rows), _FINDINGS_BATCH):
                sqlfiles.run(cur, "consistency/findings_insert.sql", {"schema": schema}, {
                    "run_pk": run_pk, "check_name": result.name,
                    "findings": json.dumps(rows[start:start + _FINDINGS_BATCH], default=str)})

    _commit(conn, go)


def run_results(conn, schema: str, run_pk: int) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/run_check_results.sql", {"schema": schema}, {"run_pk": run_pk})
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    conn.commit()
    return rows


def set_data_docs(conn, schema: str, run_pk: int, path: str) -> None:
    def go() -> None:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "consistency/run_set_docs.sql", {"schema": schema},
                         {"run_pk": run_pk, "data_docs": path})

    _commit(conn, go)


def finish_run(conn, schema: str, run_pk: int, *, status: str, failed_checks: list[str],
               summary: dict[str, Any], data_docs: str | None = None) -> None:
    def go() -> None:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "consistency/run_finish.sql", {"schema": schema}, {
                "run_pk": run_pk, "status": status, "failed_checks": failed_checks,
                "summary": json.dumps(summary, default=str), "data_docs": data_docs})

    _commit(conn, go)


@dataclass(frozen=True)
class ConsistencyRun:
    id: int
    kind: str
    status: str
    dag_id: str | None
    run_id: str | None
    started_at: datetime
    finished_at: datetime | None  # None while the run is still ``running``
    failed_checks: list[str]
    summary: dict[str, Any]
    data_docs: str | None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def age(self, now: datetime | None = None) -> timedelta:
        return (now or datetime.now(UTC)) - self.finished_at

    def passed_within(self, max_age: timedelta, now: datetime | None = None) -> bool:
        """Phase 5's question: did consistency pass, and recently enough?"""
        return self.passed and self.age(now) <= max_age


def tables_exist(conn, schema: str) -> bool:
    """Whether the consistency tables exist (a dry run must not create them)."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "common/table_exists.sql", params={"schema": schema, "table_name": "consistency_runs"})
        exists = bool(cur.fetchone()[0])
    conn.commit()
    return exists


def run_of_dag_run(conn, schema: str, *, dag_id: str | None, run_id: str | None, kind: str) -> ConsistencyRun | None:
    """The latest run (finished or not) started by one DAG run, or None (also when no table exists)."""
    if not tables_exist(conn, schema):
        return None
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/run_of_dag_run.sql", {"schema": schema},
                     {"dag_id": dag_id, "run_id": run_id, "kind": kind})
        row = cur.fetchone()
    conn.commit()
    return ConsistencyRun(*row) if row else None


def last_consistency_run(conn, cfg: MigrationConfig, *, kinds: tuple[str, ...] = ("full",)) -> ConsistencyRun | None:
    """The latest finished run of ``kinds`` (default: full runs = diff + GX suites), or None.

    ``None`` also when the consistency tables do not exist yet (no run ever happened).
    """
    with conn.cursor() as cur:
        sqlfiles.run(cur, "common/table_exists.sql",
                     params={"schema": cfg.control_schema, "table_name": "consistency_runs"})
        exists = bool(cur.fetchone()[0])
        row = None
        if exists:
            sqlfiles.run(cur, "consistency/last_run.sql", {"schema": cfg.control_schema}, {"kinds": list(kinds)})
            row = cur.fetchone()
    conn.commit()
    return ConsistencyRun(*row) if row else None
