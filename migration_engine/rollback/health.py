"""After rollback scenarios 1 and 2: is the application healthy on the old path again?

Seed: scenario 1 "verify old code path working normally", scenario 2 "verify error rate returns
to baseline". Both are answered from the application's stats, per check interval (counter deltas,
see :mod:`migration_engine.gates.error_rate`), against a **baseline** = the old path's error rate
over ``cutover.baseline_window`` *before* the rollback started (or one the operator supplies):

* ``reads`` (scenario 2): every read of the interval (old and new path together - what users
  saw) is within ``cutover.error_rate_max_increase_points`` of the baseline, and no read was served
  from the new tables any more (the application honoured ``read_new_pct = 0``);
* ``dual_write`` (scenario 1): old-path reads and writes are within the allowed increase of the
  baseline, and no dual-write was attempted any more (``dual_write_stats`` did not move: the
  application honoured ``dual_write_enabled = false``).

An interval with fewer than ``cutover.min_requests_per_check`` requests proves nothing (fail
closed). Recovery must be seen within ``cutover.rollback_verify_window``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.gates import GateResult
from migration_engine.gates.error_rate import PathCounts, judge, path_totals, window_counts
from migration_engine.gates.window import fmt_duration

MODES = ("reads", "dual_write")
GATE = "rollback_recovery"


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"recovery mode must be one of {MODES}, got {mode!r}")


def dual_write_attempts(conn, schema: str, entities: list[str], since: datetime) -> int:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "cutover/dual_write_totals.sql", {"schema": schema},
                     {"entities": list(entities), "since": since})
        attempts, _failures = cur.fetchone()
    return int(attempts)


def capture(conn, schema: str, entities: list[str], mode: str, *, since: datetime, now: datetime | None = None
            ) -> dict[str, Any]:
    """Cumulative counters now (JSON-ready); compare two captures with :func:`evaluate`."""
    _check_mode(mode)
    now = now or datetime.now(UTC)
    reads = path_totals(conn, schema, entities, since, "read")
    state: dict[str, Any] = {"at": now.isoformat(), "since": since.isoformat(),
                             "reads": {p: c.as_list() for p, c in reads.items()}}
    if mode == "dual_write":
        writes = path_totals(conn, schema, entities, since, "write")
        state["writes"] = {p: c.as_list() for p, c in writes.items()}
        state["dual_write_attempts"] = dual_write_attempts(conn, schema, entities, since)
    if not conn.autocommit:
        conn.rollback()
    return state


def _counts(state: dict[str, Any], kind: str, path: str) -> PathCounts:
    return PathCounts(*state.get(kind, {}).get(path, [0, 0]))


def evaluate(previous: dict[str, Any], current: dict[str, Any], mode: str, *, baseline_pct: float | None,
             max_increase_points: float, min_requests: int) -> GateResult:
    """Judge the interval between two captures: ``passed`` = recovered."""
    _check_mode(mode)
    span = fmt_duration(datetime.fromisoformat(current["at"]) - datetime.fromisoformat(previous["at"]))
    new_reads = _counts(current, "reads", "new").minus(_counts(previous, "reads", "new"))
    old_reads = _counts(current, "reads", "old").minus(_counts(previous, "reads", "old"))
    if mode == "reads":
        seen = PathCounts(old_reads.requests + new_reads.requests, old_reads.errors + new_reads.errors)
        label = "reads (all paths)"
    else:
        old_writes = _counts(current, "writes", "old").minus(_counts(previous, "writes", "old"))
        seen = PathCounts(old_reads.requests + old_writes.requests, old_reads.errors + old_writes.errors)
        label = "old-path requests (reads and writes)"
    result = judge(seen, PathCounts(), baseline_pct=baseline_pct, max_increase_points=max_increase_points,
                   min_requests=min_requests, span=span, gate=GATE, path_label=label)
    figures = {k: v for k, v in result.figures.items() if not k.startswith("old_")}
    figures.update({"mode": mode, "requests": seen.requests, "errors": seen.errors,
                    "error_pct": figures.pop("new_error_pct"), "new_path_reads": new_reads.requests})
    figures.pop("new_requests", None)
    figures.pop("new_errors", None)
    problems = []
    if mode == "reads" and new_reads.requests:
        problems.append(f"{new_reads.requests:,} reads were still served from the new tables in {span} "
                        "(the application has not picked up read_new_pct = 0 yet)")
    if mode == "dual_write":
        attempts = int(current.get("dual_write_attempts", 0)) - int(previous.get("dual_write_attempts", 0))
        figures["dual_write_attempts"] = attempts
        if attempts > 0:
            problems.append(f"{attempts:,} dual-writes were still attempted in {span} (the application has not "
                            "picked up dual_write_enabled = false yet)")
    if result.status == "passed" and problems:
        return GateResult(GATE, "waiting", "; ".join([*problems, result.reason]), figures)
    status = "waiting" if result.status == "critical" else result.status  # not recovered *yet*
    reason = result.reason if result.status != "critical" else f"not back at baseline yet: {result.reason}"
    return GateResult(GATE, status, "; ".join([reason, *problems]), figures)


def baseline_before(conn, cfg: MigrationConfig, mode: str, t0: datetime) -> tuple[float | None, dict[str, Any]]:
    """The old path's error rate over ``cutover.baseline_window`` before ``t0`` (None: too little data)."""
    _check_mode(mode)
    window = cfg.cutover.baseline_window
    entities = list(cfg.entities)
    reads = window_counts(conn, cfg, entities=entities, start=t0 - window, end=t0, path="old", operation="read")
    counts = reads
    if mode == "dual_write":
        writes = window_counts(conn, cfg, entities=entities, start=t0 - window, end=t0, path="old",
                               operation="write")
        counts = PathCounts(reads.requests + writes.requests, reads.errors + writes.errors)
    if not conn.autocommit:
        conn.rollback()
    figures = {"baseline_window": fmt_duration(window), "baseline_requests": counts.requests,
               "baseline_errors": counts.errors}
    if counts.requests < cfg.cutover.min_requests_per_check:
        return None, figures
    return counts.error_pct, figures

