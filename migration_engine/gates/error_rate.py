"""The read-rollout gate: new-path read error rate against the old-path baseline (seed 5.2).

Rule (seed "Rollback Trigger: error rate increase > 0.5 %"): over one check interval, the error
rate of reads served from the new tables may exceed the baseline by at most
``cutover.error_rate_max_increase_points`` percentage points. The baseline is the old path's read
error rate *in the same interval* when the old path served enough reads to judge (apples to
apples: a database-wide incident raises both), otherwise the pre-rollout baseline measured before
the first step (at 100 % the old path serves nothing).

Fail closed, like Argo Rollouts ("no data is not success"): fewer than
``cutover.min_requests_per_check`` new-path reads in the interval, or no baseline at all, is
``waiting`` - never ``passed``. A breach is ``critical``.

Two ways to measure an interval:

* **counter deltas** (:func:`take_snapshot` + :func:`evaluate_delta`, used by the rollout hold and
  the rollback verifications): the stats are additive per-minute upserts, so the difference of
  two cumulative snapshots is exactly what the application reported between them. This works for
  any check interval, including the seconds-long intervals of a compressed rehearsal.
* **window** (the registered ``read_error_rate`` gate, for ``GateSensor``): totals of the
  per-minute buckets in ``[now - window, now)`` via :mod:`migration_engine.gates.window`; minute
  granularity, so use windows of several minutes.

Either way the decision is :func:`judge`, a pure function.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from migration_engine import latency, sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.gates import GateResult, register
from migration_engine.gates.window import fmt_duration, window_stats

GATE = "read_error_rate"
# Snapshots sum buckets from a little before their base time: a request made just before the
# base time may be flushed (into its own minute) after it; the delta then still counts it once.
SNAPSHOT_LOOKBACK = timedelta(minutes=5)


@dataclass(frozen=True)
class PathCounts:
    requests: int = 0
    errors: int = 0
    hist: tuple[int, ...] = ()  # latency histogram (migration_engine.latency bounds); () if not reported

    @property
    def error_pct(self) -> float | None:
        return None if self.requests <= 0 else 100.0 * self.errors / self.requests

    @property
    def p95_ms(self) -> float | None:
        return latency.percentile(self.hist) if self.hist else None

    @property
    def p95_floor_ms(self) -> float | None:
        return latency.percentile_floor(self.hist) if self.hist else None

    @property
    def timed(self) -> int:
        return sum(self.hist)

    def minus(self, other: PathCounts) -> PathCounts:
        # A stats reset (rows deleted) would make this negative; clamp so it reads as "no data".
        return PathCounts(max(0, self.requests - other.requests), max(0, self.errors - other.errors),
                          latency.minus(self.hist, other.hist))

    def as_list(self) -> list[int]:
        return [self.requests, self.errors]


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counts per path at ``at``, summed over buckets since ``since``."""

    at: datetime
    since: datetime
    old: PathCounts
    new: PathCounts

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "since": self.since.isoformat(),
                "old": self.old.as_list(), "new": self.new.as_list(),
                "old_hist": list(self.old.hist), "new_hist": list(self.new.hist)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        try:
            hists = {p: tuple(map(int, data.get(f"{p}_hist") or ())) for p in ("old", "new")}
            return cls(at=datetime.fromisoformat(data["at"]), since=datetime.fromisoformat(data["since"]),
                       old=PathCounts(*map(int, data["old"]), hists["old"]),
                       new=PathCounts(*map(int, data["new"]), hists["new"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed error-rate snapshot {data!r}: {exc}") from None


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def judge(new: PathCounts, old: PathCounts, *, baseline_pct: float | None, max_increase_points: float,
          min_requests: int, span: str, gate: str = GATE, path_label: str = "new-path reads") -> GateResult:
    """Decide one interval. ``baseline_pct`` is the fallback (pre-rollout) baseline."""
    figures: dict[str, Any] = {
        "interval": span,
        "new_requests": new.requests, "new_errors": new.errors, "new_error_pct": _pct(new.error_pct),
        "old_requests": old.requests, "old_errors": old.errors, "old_error_pct": _pct(old.error_pct),
        "max_increase_points": max_increase_points, "min_requests": min_requests,
        "fallback_baseline_pct": _pct(baseline_pct),
    }
    if old.requests >= min_requests:
        baseline, source = old.error_pct, "old path, same interval"
    elif baseline_pct is not None:
        baseline, source = baseline_pct, "pre-rollout old-path baseline"
    else:
        baseline, source = None, None
    figures["baseline_pct"] = _pct(baseline)
    figures["baseline_source"] = source
    if new.requests < min_requests:
        return GateResult(gate, "waiting", (
            f"only {new.requests:,} {path_label} in {span} (need at least {min_requests:,} to judge); "
            "no data is not success"), figures)
    if baseline is None:
        return GateResult(gate, "waiting", (
            f"no baseline: only {old.requests:,} old-path reads in {span} and no pre-rollout baseline"), figures)
    increase = new.error_pct - baseline
    figures["increase_points"] = round(increase, 4)
    summary = (f"{path_label} error rate {_fmt_pct(new.error_pct)} ({new.errors:,}/{new.requests:,}) vs "
               f"baseline {_fmt_pct(baseline)} ({source}) over {span}: {increase:+.2f} points")
    if increase > max_increase_points:
        return GateResult(gate, "critical", f"{summary}, above the allowed +{max_increase_points:g}", figures)
    return GateResult(gate, "passed", f"{summary} (allowed +{max_increase_points:g})", figures)


def _entities(cfg: MigrationConfig, entity: Any) -> list[str]:
    if entity is None:
        names = list(cfg.entities)
    elif isinstance(entity, str):
        names = [entity]
    else:
        names = list(entity)
    unknown = [e for e in names if e not in cfg.entities]
    if unknown or not names:
        raise ValueError(f"{GATE}: entity {unknown or names} not in the config; known: {sorted(cfg.entities)}")
    return names


def path_totals(conn, schema: str, entities: list[str], since: datetime, operation: str = "read"
                ) -> dict[str, PathCounts]:
    """Cumulative counts per path since ``since`` (read-only; no commit)."""
    if operation not in ("read", "write"):
        raise ValueError(f"operation must be read or write, got {operation!r}")
    with conn.cursor() as cur:
        sqlfiles.run(cur, "cutover/path_totals.sql", {"schema": schema},
                     {"operation": operation, "entities": list(entities), "since": since})
        rows = cur.fetchall()
    out = {"old": PathCounts(), "new": PathCounts()}
    for path, requests, errors, hist in rows:
        out[path] = PathCounts(int(requests), int(errors), tuple(int(n) for n in hist or ()))
    return out


def take_snapshot(conn, cfg: MigrationConfig, *, entities: list[str] | None = None, since: datetime | None = None,
                  now: datetime | None = None, operation: str = "read") -> Snapshot:
    """Cumulative per-path counts now; ``since`` bounds the sum (default: 5 minutes before now)."""
    now = now or datetime.now(UTC)
    since = since or now - SNAPSHOT_LOOKBACK
    totals = path_totals(conn, cfg.control_schema, entities or list(cfg.entities), since, operation)
    if not conn.autocommit:
        conn.rollback()  # end the read-only transaction: the next snapshot must see new flushes
    return Snapshot(at=now, since=since, old=totals["old"], new=totals["new"])


def evaluate_delta(previous: Snapshot, current: Snapshot, *, baseline_pct: float | None, max_increase_points: float,
                   min_requests: int) -> GateResult:
    """Judge what was reported between two snapshots (taken with the same ``since``)."""
    span = fmt_duration(current.at - previous.at)
    result = judge(current.new.minus(previous.new), current.old.minus(previous.old), baseline_pct=baseline_pct,
                   max_increase_points=max_increase_points, min_requests=min_requests, span=span)
    figures = {**result.figures, "interval_start": previous.at.isoformat(timespec="seconds"),
               "interval_end": current.at.isoformat(timespec="seconds")}
    return GateResult(result.gate, result.status, result.reason, figures)


def interval_counts(previous: Snapshot, current: Snapshot) -> tuple[PathCounts, PathCounts]:
    """(new, old) counts - with their latency histograms - reported between two snapshots."""
    return current.new.minus(previous.new), current.old.minus(previous.old)


def window_counts(conn, cfg: MigrationConfig, *, entities: list[str], start: datetime, end: datetime,
                  path: str, operation: str = "read") -> PathCounts:
    """Totals of one path over ``[start, end)`` from the per-minute buckets (minute granularity)."""
    if len(entities) != 1 and set(entities) != set(cfg.entities):
        raise ValueError(f"{GATE}: window mode measures one entity or all of them, got {entities}")
    filters: dict[str, Any] = {"operation": operation, "path": path}
    if len(entities) == 1:
        filters["entity"] = entities[0]
    ws = window_stats(conn, schema=cfg.control_schema, table="path_stats", total_column="requests",
                      bad_column="errors", start=start, end=end, max_gap=end - start, filters=filters)
    return PathCounts(ws.total, ws.bad)


def old_path_baseline(conn, cfg: MigrationConfig, *, now: datetime | None = None, window: timedelta | None = None,
                      entities: list[str] | None = None) -> tuple[PathCounts, timedelta]:
    """The old path's read counts over the baseline window before ``now`` (for the rollout's baseline)."""
    now = now or datetime.now(UTC)
    window = window or cfg.cutover.baseline_window
    counts = window_counts(conn, cfg, entities=entities or list(cfg.entities), start=now - window, end=now,
                           path="old")
    return counts, window


@register(GATE)
def read_error_rate(conn, cfg: MigrationConfig, now: datetime, **params: Any) -> GateResult:
    """Window mode: params ``entity``, ``window`` (default cutover.check_interval),
    ``max_increase_points``, ``min_requests``, ``baseline_pct`` (fallback baseline)."""
    from migration_engine.gates.dual_write import duration_param, number_param

    known = {"entity", "window", "max_increase_points", "min_requests", "baseline_pct"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{GATE}: unknown gate param(s) {unknown}; known: {sorted(known)}")
    co = cfg.cutover
    entities = _entities(cfg, params.get("entity"))
    window = duration_param(params.get("window", co.check_interval), "window", cfg)
    max_inc = number_param(params.get("max_increase_points", co.error_rate_max_increase_points),
                           "max_increase_points", lo=0, hi=100)
    min_requests = int(number_param(params.get("min_requests", co.min_requests_per_check), "min_requests", lo=1))
    baseline = params.get("baseline_pct")
    baseline = None if baseline is None else number_param(baseline, "baseline_pct", lo=0, hi=100)
    new = window_counts(conn, cfg, entities=entities, start=now - window, end=now, path="new")
    old = window_counts(conn, cfg, entities=entities, start=now - window, end=now, path="old")
    result = judge(new, old, baseline_pct=baseline, max_increase_points=max_inc, min_requests=min_requests,
                   span=f"the last {fmt_duration(window)}")
    return GateResult(result.gate, result.status, result.reason, {**result.figures, "entities": entities})
