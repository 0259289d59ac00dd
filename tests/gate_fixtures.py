"""Helpers for gate tests: simulated per-minute stats written straight into the control schema.

Not a conftest: import what you need; the fixture is ``control_conn`` (import ``control_conn_fixture``).
Test-side SQL is fine here (product code keeps its SQL in include/sql).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from migration_engine import control

SCHEMA = "migration_control"


def minute(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


@pytest.fixture(name="control_conn")
def control_conn_fixture(databases):
    """A connection to this test's legacy database with the control schema created."""
    conn = databases.connect("legacy")
    control.ensure_control_schema(conn, SCHEMA)
    yield conn
    conn.close()


def write_stats(
    conn,
    *,
    end: datetime,
    minutes: int,
    entity: str = "listings",
    attempts: int = 100,
    success_pct: float = 99.5,
    p95_ms: float | None = 40.0,
    skip_minutes: range | set | None = None,
    instance: str = "app-1",
    table: str = "dual_write_stats",
) -> int:
    """One row per minute for the ``minutes`` minutes before ``end`` (minute ``i`` = end - i - 1).

    ``skip_minutes``: indexes (0 = the newest minute) left without data, to make gaps.
    Returns the number of rows written. Failures per minute = round(attempts * (100 - pct) / 100).
    """
    failures = round(attempts * (100 - success_pct) / 100)
    last = minute(end) - timedelta(minutes=1)
    rows = []
    for i in range(minutes):
        if skip_minutes and i in skip_minutes:
            continue
        rows.append((entity, last - timedelta(minutes=i), instance, attempts, failures, p95_ms))
    with conn.cursor() as cur:
        if table == "dual_write_stats":
            cur.executemany(
                f"INSERT INTO {SCHEMA}.dual_write_stats (entity, bucket, instance, attempts, failures, p95_latency_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (entity, bucket, instance) DO UPDATE "
                "SET attempts = excluded.attempts, failures = excluded.failures, "
                "p95_latency_ms = excluded.p95_latency_ms", rows)
        elif table == "shadow_read_stats":
            cur.executemany(
                f"INSERT INTO {SCHEMA}.shadow_read_stats (entity, bucket, instance, reads_compared, mismatches) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING", [r[:5] for r in rows])
        else:
            raise ValueError(table)
    conn.commit()
    return len(rows)


def write_operation_stats(conn, operation: str, *, end: datetime, minutes: int, requests: int = 100,
                          errors: int = 0, p95_ms: float | None = 40.0, instance: str = "app-1") -> None:
    """What the application reports for a named operation: one ``operation_stats`` row per minute."""
    last = minute(end) - timedelta(minutes=1)
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {SCHEMA}.operation_stats (operation, bucket, instance, requests, errors, p95_latency_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (operation, bucket, instance) DO UPDATE "
            "SET requests = excluded.requests, errors = excluded.errors, p95_latency_ms = excluded.p95_latency_ms",
            [(operation, last - timedelta(minutes=i), instance, requests, errors, p95_ms) for i in range(minutes)])
    conn.commit()


def clear_stats(conn, table: str = "dual_write_stats") -> None:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {SCHEMA}.{table}")
    conn.commit()


def gate_rows(conn, gate: str | None = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT gate, status, reason, figures, dag_id, run_id FROM {SCHEMA}.gate_results "
                    "WHERE %(gate)s::text IS NULL OR gate = %(gate)s ORDER BY id", {"gate": gate})
        rows = cur.fetchall()
    conn.commit()
    return rows
