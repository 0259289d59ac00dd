"""Backfill throttling, like GitLab's batched background migrations and gh-ost.

* **Adaptive batch size**: each batch's duration is compared with the target; the next batch grows
  or shrinks by that ratio (at most x2 / x0.5 per step, within [min, max]). A slow database gets
  smaller batches (shorter row locks, shorter snapshots), a fast one bigger batches (less overhead).
* **Rate cap**: ``max_rows_per_second`` for the whole backfill, shared by the ranges running in
  parallel; a worker that is ahead of its share sleeps.
* **Health pauses**: before a batch (at most every ``pause_check_interval``) the worker reads load
  signals - active connections and lock waits on both servers, replication lag of the legacy
  primary's replicas, and the application's p95 latency from the stats contract - and pauses while
  any crosses its threshold. Reasons are logged and written to the ledger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import Backfill

GROW_MAX = 2.0
SHRINK_MAX = 0.5


def next_batch_size(current: int, elapsed: float, s: Backfill) -> int:
    """Scale the batch toward ``target_batch_duration`` (bounded step, bounded size)."""
    if elapsed <= 0:
        factor = GROW_MAX
    else:
        factor = min(GROW_MAX, max(SHRINK_MAX, s.target_batch_duration.total_seconds() / elapsed))
    return int(max(s.min_batch_size, min(s.max_batch_size, round(current * factor))))


def rate_sleep(rows: int, elapsed: float, s: Backfill, share: int) -> float:
    """Seconds to sleep after a batch of ``rows`` that took ``elapsed`` s, to respect the rate cap."""
    if s.max_rows_per_second <= 0 or rows <= 0:
        return 0.0
    per_worker = s.max_rows_per_second / max(1, share)
    return max(0.0, rows / per_worker - elapsed)


@dataclass(frozen=True)
class Health:
    legacy_active_connections: int
    legacy_lock_waits: int
    new_active_connections: int
    new_lock_waits: int
    replicas: int
    replication_lag_seconds: float | None
    app_p95_latency_ms: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _activity(conn) -> tuple[int, int]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/health_activity.sql")
        active, waits = cur.fetchone()
    conn.commit()
    return int(active), int(waits)


def _replication(conn) -> tuple[int, float | None]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/health_replication.sql")
        replicas, lag = cur.fetchone()
    conn.commit()
    return int(replicas), None if lag is None else float(lag)


def app_p95(conn, schema: str, entity: str, window: timedelta, now: datetime | None = None) -> float | None:
    """The application's recent p95 (ms) from path_stats and dual_write_stats (the worse of both)."""
    from migration_engine.gates.window import window_stats

    now = now or datetime.now(UTC)
    start = now - window
    worst = None
    for table, total, bad in (("path_stats", "requests", "errors"), ("dual_write_stats", "attempts", "failures")):
        ws = window_stats(conn, schema=schema, table=table, total_column=total, bad_column=bad,
                          latency_column="p95_latency_ms", start=start, end=now,
                          max_gap=window, filters={"entity": entity})
        if ws.p95_latency_ms is not None:
            worst = ws.p95_latency_ms if worst is None else max(worst, ws.p95_latency_ms)
    conn.commit()
    return worst


def read_health(legacy, new, *, schema: str, entity: str, s: Backfill) -> Health:
    la, lw = _activity(legacy)
    if new is legacy:
        na, nw = la, lw
    else:
        na, nw = _activity(new)
    replicas, lag = _replication(legacy)
    p95 = app_p95(legacy, schema, entity, s.app_latency_window)
    return Health(la, lw, na, nw, replicas, lag, p95)


def pause_reasons(h: Health, s: Backfill) -> list[str]:
    """Why the backfill must wait now (empty: go on)."""
    p = s.pause_when
    max_lag = p.max_replication_lag.total_seconds()
    reasons = []
    if h.legacy_active_connections > p.max_active_connections:
        reasons.append(f"legacy database has {h.legacy_active_connections} active connections "
                       f"(> {p.max_active_connections})")
    if h.new_active_connections > p.max_active_connections:
        reasons.append(f"new database has {h.new_active_connections} active connections "
                       f"(> {p.max_active_connections})")
    if h.legacy_lock_waits > p.max_lock_waits:
        reasons.append(f"{h.legacy_lock_waits} sessions wait for locks on the legacy database (> {p.max_lock_waits})")
    if h.new_lock_waits > p.max_lock_waits:
        reasons.append(f"{h.new_lock_waits} sessions wait for locks on the new database (> {p.max_lock_waits})")
    if h.replication_lag_seconds is not None and h.replication_lag_seconds > max_lag:
        reasons.append(f"replication lag {h.replication_lag_seconds:.1f}s on {h.replicas} replica(s) "
                       f"(> {max_lag:g}s)")
    if h.app_p95_latency_ms is not None and h.app_p95_latency_ms > p.max_app_p95_latency_ms:
        reasons.append(f"application p95 latency {h.app_p95_latency_ms:.0f} ms over the last "
                       f"{s.app_latency_window.total_seconds():g}s (> {p.max_app_p95_latency_ms:g} ms)")
    return reasons
