"""Pre-cutover performance gate (seed 5.1 "performance benchmarks meet targets"): new-path read p95
within ``cutover.performance_max_p95_increase_pct`` % of the old path's over a window.

Before the cutover no request is served from the new tables, so the benchmark is the shadow read:
for each compared key the application times both sides (stats-contract operations
``shadow_read.new`` / ``shadow_read.old`` in ``operation_stats``; names configurable), the same keys at
the same moment. The p95 of a window is the event-weighted p95 of the per-minute p95s
(``gates/window_latency.sql``). Fail closed: fewer than ``performance_min_samples`` samples on either
side is ``waiting``; a slow new path is ``critical`` (waiting will not make it faster: fix the indexes).

:func:`judge_latency` is shared with the read rollout's latency rollback (``cutover.hold_watch``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from migration_engine.config import MigrationConfig
from migration_engine.gates import GateResult, register
from migration_engine.gates.window import fmt_duration, window_stats

GATE = "cutover_read_latency"


def judge_latency(new_p95: float | None, old_p95: float | None, *, max_increase_pct: float, span: str,
                  gate: str = GATE, new_samples: int = 0, old_samples: int = 0, min_samples: int = 1,
                  min_increase_ms: float = 0.0, old_label: str = "old-path",
                  new_p95_floor: float | None = None) -> GateResult:
    """``critical`` when new p95 > old p95 x (1 + pct/100) **and** more than ``min_increase_ms`` above it
    (a noise floor); ``waiting`` without enough data on either side.

    From histograms (the rollout) ``new_p95`` is its bucket's upper bound and ``new_p95_floor`` its
    lower bound, ``old_p95`` the old bucket's upper bound: it trips only when the new p95 is certainly
    above the limit (a value near a bucket edge never does)."""
    figures: dict[str, Any] = {
        "new_p95_ms": None if new_p95 is None else round(new_p95, 1),
        "old_p95_ms": None if old_p95 is None else round(old_p95, 1),
        "max_p95_increase_pct": max_increase_pct, "new_samples": new_samples, "old_samples": old_samples,
        "min_samples": min_samples, "min_increase_ms": min_increase_ms, "window": span}
    if new_p95 is None or old_p95 is None or new_samples < min_samples or old_samples < min_samples:
        return GateResult(gate, "waiting", (
            f"not enough timed reads to compare over {span}: {new_samples:,} new-path, {old_samples:,} old-path "
            f"(need {min_samples:,} each); no data is not success"), figures)
    limit = max(old_p95 * (1 + max_increase_pct / 100), old_p95 + min_increase_ms)
    increase = 100.0 * (new_p95 - old_p95) / old_p95 if old_p95 > 0 else 0.0
    figures.update({"limit_ms": round(limit, 1), "increase_pct": round(increase, 1)})
    summary = (f"new-path read p95 {new_p95:.1f} ms vs {old_label} {old_p95:.1f} ms over {span} "
               f"({increase:+.0f}%, allowed +{max_increase_pct:g}% / +{min_increase_ms:g} ms, limit {limit:.1f} ms)")
    if new_p95_floor is not None:
        figures["new_p95_floor_ms"] = round(new_p95_floor, 1)
        summary = summary.replace(f"p95 {new_p95:.1f} ms", f"p95 {new_p95_floor:g}-{new_p95:g} ms", 1)
    if (new_p95 if new_p95_floor is None else new_p95_floor) > limit:
        return GateResult(gate, "critical", f"{summary}: the new path is too slow", figures)
    return GateResult(gate, "passed", summary, figures)


def operation_window(conn, cfg: MigrationConfig, operation: str, start: datetime, end: datetime):
    return window_stats(conn, schema=cfg.control_schema, table="operation_stats", total_column="requests",
                        bad_column="errors", start=start, end=end, max_gap=end - start,
                        filters={"operation": operation}, latency_column="p95_latency_ms")


@register(GATE)
def read_latency(conn, cfg: MigrationConfig, now: datetime, **params: Any) -> GateResult:
    """Params: ``window``, ``max_increase_pct``, ``min_samples`` (defaults: ``cutover.performance_*``)."""
    from migration_engine.gates.dual_write import duration_param, number_param

    known = {"window", "max_increase_pct", "min_samples"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{GATE}: unknown gate param(s) {unknown}; known: {sorted(known)}")
    co = cfg.cutover
    window = duration_param(params.get("window", co.performance_window), "window", cfg)
    pct = number_param(params.get("max_increase_pct", co.performance_max_p95_increase_pct), "max_increase_pct",
                       lo=0, hi=1000)
    min_samples = int(number_param(params.get("min_samples", co.performance_min_samples), "min_samples", lo=1))
    new = operation_window(conn, cfg, co.performance_new_operation, now - window, now)
    old = operation_window(conn, cfg, co.performance_old_operation, now - window, now)
    result = judge_latency(new.p95_latency_ms, old.p95_latency_ms, max_increase_pct=pct,
                           span=f"the last {fmt_duration(window)}", new_samples=new.total, old_samples=old.total,
                           min_samples=min_samples, min_increase_ms=co.performance_min_increase_ms)
    figures = {**result.figures, "new_operation": co.performance_new_operation,
               "old_operation": co.performance_old_operation}
    return GateResult(result.gate, result.status, result.reason, figures)
