"""Backfill throttling, like GitLab's batched background migrations and gh-ost.

* **Adaptive batch size**: each batch's duration is compared with the target; the next batch grows
  or shrinks by that ratio (at most x2 / x0.5 per step, within [min, max]). A slow database gets
  smaller batches (shorter row locks, shorter snapshots), a fast one bigger batches (less overhead).
* **Rate cap**: ``max_rows_per_second`` for the whole backfill, shared by the ranges running in
  parallel; a worker that is ahead of its share sleeps. Under a rate (the cap's or the controller's)
  batches hold at most ``pace_slice`` worth of rows, so the copy's load is even, not bursts.
* **Health pauses**: before a batch (at most every ``pause_check_interval``) the worker reads load
  signals - active connections and lock waits on both servers, replication lag of both primaries'
  replicas (or an operator's lag function), vacuum in progress on the tables read and written,
  the new database's WAL rate, and the application's p95 latency from the stats contract - and
  pauses while any crosses its threshold. Reasons are logged and written to the ledger.
* **Latency budget**: :mod:`.controller` sets the rate from the probe (:mod:`.probe`) and the
  stats contract against a baseline (``backfill.throttle.budget``).
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


def paced_batch_size(size: int, rows_per_second: float | None, s: Backfill) -> int:
    """``size`` bounded to ``pace_slice`` worth of rows at this worker's ``rows_per_second`` (None: no rate).

    Without it a capped copy runs batches of ``target_batch_duration`` at full speed and then sleeps
    (1 s bursts at the uncapped rate every few seconds): the application's requests that land in a
    burst see the uncapped copy, and its tail latency with them (bench/README.md, "Pacing")."""
    if rows_per_second is None or rows_per_second <= 0:
        return size
    per_slice = int(rows_per_second * s.pace_slice.total_seconds())
    return max(s.min_batch_size, min(size, per_slice))


def worker_cap(s: Backfill, share: int) -> float | None:
    """One worker's part of ``max_rows_per_second`` (rows/s) when ``share`` workers copy; None: no cap."""
    return s.max_rows_per_second / max(1, share) if s.max_rows_per_second > 0 else None


def rate_sleep(rows: int, elapsed: float, s: Backfill, share: int) -> float:
    """Seconds to sleep after a batch of ``rows`` that took ``elapsed`` s, to respect the rate cap."""
    per_worker = worker_cap(s, share)
    if per_worker is None or rows <= 0:
        return 0.0
    return max(0.0, rows / per_worker - elapsed)


@dataclass(frozen=True)
class Health:
    legacy_active_connections: int
    legacy_lock_waits: int
    new_active_connections: int
    new_lock_waits: int
    replicas: int  # of the legacy database
    replication_lag_seconds: float | None  # of the legacy database's replicas
    app_p95_latency_ms: float | None
    new_replicas: int = 0
    new_replication_lag_seconds: float | None = None  # of the new (written) database's replicas
    legacy_vacuums: int = 0  # vacuums in progress on the table the copy reads
    new_vacuums: int = 0  # ... on the table the copy writes
    new_wal_bytes_per_second: float | None = None  # None until two readings

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _activity(conn) -> tuple[int, int]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/health_activity.sql")
        active, waits = cur.fetchone()
    conn.commit()
    return int(active), int(waits)


def _replication(conn, function: str | None = None) -> tuple[int, float | None]:
    """(replicas, worst lag in s) from pg_stat_replication, or from the configured schema.function."""
    with conn.cursor() as cur:
        if function:
            schema, name = function.split(".", 1)
            sqlfiles.run(cur, "backfill/health_replication_function.sql",
                         {"lag_schema": schema, "lag_function": name})
        else:
            sqlfiles.run(cur, "backfill/health_replication.sql")
        row = cur.fetchone()
    conn.commit()
    replicas, lag = row if row is not None else (0, None)
    return int(replicas or 0), None if lag is None else float(lag)


def _vacuums(conn, schema: str, table: str) -> int:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/health_autovacuum.sql", params={"table_schema": schema, "table_name": table})
        vacuums, _auto = cur.fetchone()
    conn.commit()
    return int(vacuums)


class WalRate:
    """Bytes of WAL per second between two readings of one server's insert position."""

    def __init__(self, clock=None) -> None:
        import time

        self._clock = clock or time.monotonic
        self._last: tuple[float, float] | None = None

    def read(self, conn) -> float | None:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "backfill/health_wal.sql")
            (pos,) = cur.fetchone()
        conn.commit()
        return self.update(None if pos is None else float(pos))

    def update(self, position: float | None) -> float | None:
        now = self._clock()
        if position is None:
            return None
        last, self._last = self._last, (now, position)
        if last is None or now <= last[0]:
            return None
        return max(0.0, (position - last[1]) / (now - last[0]))


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


def read_health(legacy, new, *, schema: str, entity: str, s: Backfill, tables: dict[str, tuple[str, str]] | None = None,
                wal: WalRate | None = None) -> Health:
    """Every load signal of both databases. ``tables``: {"legacy"/"new": (schema, table)} the copy
    reads / writes (for the vacuum signal); ``wal``: the new database's WAL-rate state across calls."""
    sig = s.throttle.signals
    la, lw = _activity(legacy)
    if new is legacy:
        na, nw = la, lw
    else:
        na, nw = _activity(new)
    replicas, lag = _replication(legacy, sig.legacy_replication_lag_function)
    if new is legacy and sig.new_replication_lag_function == sig.legacy_replication_lag_function:
        new_replicas, new_lag = replicas, lag
    else:
        new_replicas, new_lag = _replication(new, sig.new_replication_lag_function)
    lv = nv = 0
    if sig.pause_on_autovacuum and tables:
        lv = _vacuums(legacy, *tables["legacy"])
        nv = _vacuums(new, *tables["new"])
    wal_rate = wal.read(new) if wal is not None and sig.max_wal_bytes_per_second > 0 else None
    p95 = app_p95(legacy, schema, entity, s.app_latency_window)
    return Health(la, lw, na, nw, replicas, lag, p95, new_replicas, new_lag, lv, nv, wal_rate)


def pause_reasons(h: Health, s: Backfill) -> list[str]:
    """Why the backfill must wait now (empty: go on)."""
    p = s.pause_when
    sig = s.throttle.signals
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
    if h.new_replication_lag_seconds is not None and h.new_replication_lag_seconds > max_lag:
        reasons.append(f"replication lag {h.new_replication_lag_seconds:.1f}s on {h.new_replicas} replica(s) "
                       f"of the new database (> {max_lag:g}s)")
    if sig.pause_on_autovacuum and h.legacy_vacuums:
        reasons.append("vacuum running on the legacy table the copy reads (autovacuum pause)")
    if sig.pause_on_autovacuum and h.new_vacuums:
        reasons.append("vacuum running on the new table the copy writes (autovacuum pause)")
    if (sig.max_wal_bytes_per_second > 0 and h.new_wal_bytes_per_second is not None
            and h.new_wal_bytes_per_second > sig.max_wal_bytes_per_second):
        reasons.append(f"new database writes {h.new_wal_bytes_per_second / 1e6:.1f} MB/s of WAL "
                       f"(> {sig.max_wal_bytes_per_second / 1e6:g} MB/s)")
    if h.app_p95_latency_ms is not None and h.app_p95_latency_ms > p.max_app_p95_latency_ms:
        reasons.append(f"application p95 latency {h.app_p95_latency_ms:.0f} ms over the last "
                       f"{s.app_latency_window.total_seconds():g}s (> {p.max_app_p95_latency_ms:g} ms)")
    return reasons
