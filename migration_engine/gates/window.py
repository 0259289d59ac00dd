"""Gate building block: a rate over a rolling window from a per-minute stats table, failing closed.

Every gate of the migration asks the same question of a different stats table: "over the last W,
how many events, how many bad, how slow - and was there data all along?" The dual-write gate
(``dual_write_stats``: attempts/failures), the shadow-read gate (``shadow_read_stats``:
reads_compared/mismatches) and the error-rate gate (``path_stats``: requests/errors per path) all
use :func:`window_stats`, so they agree on what a gap is and on how thin data is reported.

Fail closed: the helpers only measure. :func:`data_problems` turns "too few events" and "a stretch
of the window without data" into human reasons; an evaluator that gets any reason back must not
return ``passed`` (missing data is not success).

    ws = window_stats(conn, schema="migration_control", table="shadow_read_stats",
                      total_column="reads_compared", bad_column="mismatches",
                      start=now - timedelta(hours=24), end=now,
                      filters={"entity": "listings", "cohort": "read_new_10"},
                      max_gap=timedelta(minutes=10))
    problems = data_problems(ws, min_total=1000, what="shadow reads")
    mismatch_pct = ws.bad_pct   # None when there were no events
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_engine import sqlfiles

BUCKET_WIDTH = timedelta(minutes=1)  # the stats contract aggregates per minute


@dataclass(frozen=True)
class WindowStats:
    """What one stats table says about ``[start, end)``."""

    table: str
    start: datetime
    end: datetime
    max_gap: timedelta
    total: int
    bad: int
    buckets: int  # minutes that have data (total > 0)
    first_bucket: datetime | None
    last_bucket: datetime | None
    largest_gap: timedelta  # longest stretch without data, window edges included
    long_gaps: list[tuple[datetime, datetime]] = field(default_factory=list)  # those > max_gap (top 10)
    p95_latency_ms: float | None = None  # event-weighted p95 of the per-minute p95s
    max_p95_latency_ms: float | None = None  # worst single (minute, instance) p95

    @property
    def window(self) -> timedelta:
        return self.end - self.start

    @property
    def bad_pct(self) -> float | None:
        return None if self.total == 0 else 100.0 * self.bad / self.total

    @property
    def ok_pct(self) -> float | None:
        return None if self.total == 0 else 100.0 * (self.total - self.bad) / self.total

    def figures(self) -> dict[str, Any]:
        """JSON-ready numbers for gate_results and Slack (rounded for humans)."""
        out: dict[str, Any] = {
            "window_start": self.start.isoformat(timespec="seconds"),
            "window_end": self.end.isoformat(timespec="seconds"),
            "window": fmt_duration(self.window),
            "events": self.total,
            "bad_events": self.bad,
            "minutes_with_data": self.buckets,
            "largest_gap": fmt_duration(self.largest_gap),
            "max_gap_allowed": fmt_duration(self.max_gap),
        }
        if self.long_gaps:
            out["gaps"] = [f"{a:%Y-%m-%d %H:%M}–{b:%H:%M} UTC" for a, b in self.long_gaps]
        if self.p95_latency_ms is not None:
            out["p95_latency_ms"] = round(self.p95_latency_ms, 1)
            out["max_minute_p95_latency_ms"] = round(self.max_p95_latency_ms or 0.0, 1)
        return out


def fmt_duration(td: timedelta) -> str:
    """``1h 05m``, ``12m 30s``, ``45s`` - for reasons and Slack fields."""
    secs = int(round(td.total_seconds()))
    days, secs = divmod(secs, 86400)
    hours, secs = divmod(secs, 3600)
    minutes, secs = divmod(secs, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"window bounds must be timezone-aware (UTC), got naive {value!r}")
    return value.astimezone(UTC)


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


def window_stats(
    conn,
    *,
    schema: str,
    table: str,
    total_column: str,
    bad_column: str,
    start: datetime,
    end: datetime,
    max_gap: timedelta,
    filters: dict[str, Any] | None = None,
    latency_column: str | None = None,
    percentile: float = 0.95,
    bucket_width: timedelta = BUCKET_WIDTH,
) -> WindowStats:
    """Measure ``[start, end)`` of ``schema.table`` (one or two read-only queries; no commit).

    ``filters`` are equality conditions on the table's columns (``{"entity": "listings"}``),
    matched as jsonb containment so one SQL file serves every stats table. Buckets that overlap
    the window count (so a bucket that began just before ``start`` is included: a window shorter
    than a bucket, as in compressed rehearsals, still sees the current minute).
    """
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ValueError(f"empty window: end {end} is not after start {start}")
    if max_gap <= timedelta(0):
        raise ValueError("max_gap must be positive")
    ids = {"schema": schema, "table": table, "total": total_column, "bad": bad_column}
    params = {"window_start": start, "window_end": end, "filters": json.dumps(filters or {}, default=str),
              "bucket_width": bucket_width, "max_gap": max_gap}
    with conn.cursor() as cur:
        sqlfiles.run(cur, "gates/window_summary.sql", ids, params)
        total, bad, buckets, first, last, largest_gap_s, long_gaps = cur.fetchone()
        p95 = max_p95 = None
        if latency_column:
            sqlfiles.run(cur, "gates/window_latency.sql",
                         {"schema": schema, "table": table, "total": total_column, "latency": latency_column},
                         {**params, "percentile": percentile})
            p95, max_p95, _samples = cur.fetchone()
    gaps = [(_parse_ts(a), _parse_ts(b)) for a, b in (long_gaps or [])]
    return WindowStats(
        table=f"{schema}.{table}", start=start, end=end, max_gap=max_gap, total=int(total), bad=int(bad),
        buckets=int(buckets), first_bucket=first, last_bucket=last,
        largest_gap=timedelta(seconds=float(largest_gap_s or 0.0)), long_gaps=gaps,
        p95_latency_ms=None if p95 is None else float(p95),
        max_p95_latency_ms=None if max_p95 is None else float(max_p95),
    )


def data_problems(ws: WindowStats, *, min_total: int, what: str = "events") -> list[str]:
    """Why this window's data cannot support a pass (empty list: enough data, no long gap)."""
    problems: list[str] = []
    if ws.total < min_total:
        problems.append(
            f"only {ws.total:,} {what} in the last {fmt_duration(ws.window)}; at least {min_total:,} "
            "are needed to judge (thin data is not success)")
    if ws.buckets == 0:
        problems.append(f"no {what} recorded in {ws.table} for the whole window")
    elif ws.long_gaps:
        a, b = ws.long_gaps[0] if len(ws.long_gaps) == 1 else max(ws.long_gaps, key=lambda g: g[1] - g[0])
        more = f" (and {len(ws.long_gaps) - 1} more gap(s))" if len(ws.long_gaps) > 1 else ""
        problems.append(
            f"no {what} from {a:%Y-%m-%d %H:%M} to {b:%H:%M} UTC ({fmt_duration(b - a)} > allowed gap "
            f"{fmt_duration(ws.max_gap)}){more}; a window with holes is not success")
    return problems
