"""Rows from ``queries.fetch`` + the migration config -> the dashboard's view model.

Pure functions, no I/O. The thresholds come from the config sections the gates use
(``dual_write``, ``cutover``), so the dashboard colours a figure red exactly when the gate or the
alert would. Series are filled to a fixed number of slots with ``None`` for missing buckets: a gap
in the stats (the application stopped reporting) must show as a gap, not as a straight line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from migration_engine.config import MigrationConfig
from migration_engine.dashboard import phases
from migration_engine.dashboard.queries import Windows

# Status vocabulary shared by the page (colours) and the JSON endpoint.
OK, WARNING, CRITICAL, NO_DATA, LOW_VOLUME = "ok", "warning", "critical", "no_data", "low_volume"

_PASSED = {"passed", "pass", "ok", "success", "succeeded", "consistent", "true"}
_FAILED = {"failed", "fail", "failure", "inconsistent", "mismatch", "error", "critical", "false"}
_RUNNING = {"running", "started", "in_progress", "queued", "pending"}
_WARNING = {"warning", "warn"}
_STATUS_RANK = {"failed": 4, "warning": 3, "passed": 2, "running": 1, "unknown": 0}


def pct(part: int | float | None, whole: int | float | None) -> float | None:
    """part/whole in percent; None when there is nothing to divide (no data is not 0 %)."""
    if not whole:
        return None
    return round(100.0 * float(part or 0) / float(whole), 4)


def fill(rows: list[dict[str, Any]], key: str, slots: list[datetime], empty: dict[str, Any]) -> list[dict[str, Any]]:
    """One point per slot, in order; slots without a row get ``empty`` (values None)."""
    by_time = {row[key]: row for row in rows}
    return [{"t": slot, **(by_time.get(slot) or empty)} for slot in slots]


def _rate_points(rows, key, slots, total, bad, ok_name):
    points = []
    for p in fill(rows, key, slots, {total: None, bad: None}):
        point = {k: v for k, v in p.items() if k != key}
        good = None if p[total] is None else p[total] - (p[bad] or 0)
        point[ok_name] = pct(good, p[total])
        points.append(point)
    return points


def rate_status(ok_pct: float | None, volume: int, *, warn_below: float | None, critical_below: float,
                min_volume: int) -> str:
    if ok_pct is None or not volume:
        return NO_DATA
    if ok_pct < critical_below:
        return CRITICAL
    if warn_below is not None and ok_pct < warn_below:
        return WARNING
    if volume < min_volume:
        return LOW_VOLUME
    return OK


# --- sections -------------------------------------------------------------------------------
def dual_write_section(raw: dict[str, Any], cfg: MigrationConfig, flags: dict[str, Any]) -> dict[str, Any]:
    w: Windows = raw["windows"]
    th = cfg.dual_write
    entities = {row["entity"]: row for row in raw["dual_write_by_entity"]}
    rows = []
    for name in sorted(set(cfg.entities) | set(entities)):
        r = entities.get(name, {})
        attempts, failures = r.get("attempts", 0), r.get("failures", 0)
        rec_a, rec_f = r.get("recent_attempts", 0), r.get("recent_failures", 0)
        ok_pct = pct(attempts - failures, attempts)
        rows.append({
            "entity": name,
            "configured": name in cfg.entities,
            "attempts": attempts, "failures": failures, "success_pct": ok_pct,
            "recent_attempts": rec_a, "recent_failures": rec_f,
            "recent_success_pct": pct(rec_a - rec_f, rec_a),
            "recent_p95_latency_ms": r.get("recent_p95_latency_ms"),
            "last_bucket": r.get("last_bucket"),
            "status": rate_status(ok_pct, attempts, warn_below=th.warn_below_pct,
                                  critical_below=th.critical_below_pct, min_volume=th.min_attempts),
        })
    attempts = sum(r["attempts"] for r in rows)
    failures = sum(r["failures"] for r in rows)
    rec_a = sum(r["recent_attempts"] for r in rows)
    rec_f = sum(r["recent_failures"] for r in rows)
    latencies = [r["recent_p95_latency_ms"] for r in rows if r["recent_p95_latency_ms"] is not None]
    last = [r["last_bucket"] for r in rows if r["last_bucket"] is not None]
    ok_pct = pct(attempts - failures, attempts)
    p95 = max(latencies) if latencies else None
    return {
        "enabled": bool(flags.get("dual_write_enabled", False)),
        "attempts": attempts, "failures": failures, "success_pct": ok_pct,
        "status": rate_status(ok_pct, attempts, warn_below=th.warn_below_pct,
                              critical_below=th.critical_below_pct, min_volume=th.min_attempts),
        "recent_attempts": rec_a, "recent_failures": rec_f, "recent_success_pct": pct(rec_a - rec_f, rec_a),
        "recent_p95_latency_ms": p95,
        "latency_status": NO_DATA if p95 is None else (WARNING if p95 > th.latency_p95_warn_ms else OK),
        "last_data_at": max(last) if last else None,
        "thresholds": {"warn_below_pct": th.warn_below_pct, "critical_below_pct": th.critical_below_pct,
                       "min_attempts": th.min_attempts, "latency_p95_warn_ms": th.latency_p95_warn_ms,
                       "cutover_min_success_pct": cfg.cutover.dual_write_min_success_pct},
        "entities": rows,
        "hourly": _rate_points(raw["dual_write_hourly"], "hour", w.hour_slots(), "attempts", "failures",
                               "success_pct"),
        "minutely": _rate_points(raw["dual_write_minutely"], "minute", w.minute_slots(), "attempts",
                                 "failures", "success_pct"),
    }


def shadow_section(raw: dict[str, Any], cfg: MigrationConfig, flags: dict[str, Any]) -> dict[str, Any]:
    w: Windows = raw["windows"]
    max_mismatch = cfg.cutover.shadow_mismatch_max_pct
    cohorts = []
    for r in raw["shadow_by_cohort"]:
        cohorts.append({**r, "match_pct": pct(r["reads_compared"] - r["mismatches"], r["reads_compared"]),
                        "mismatch_pct": pct(r["mismatches"], r["reads_compared"])})
    reads = sum(r["reads_compared"] for r in cohorts)
    mismatches = sum(r["mismatches"] for r in cohorts)
    match = pct(reads - mismatches, reads)
    return {
        "shadow_read_pct": flags.get("shadow_read_pct", 0),
        "reads_compared": reads, "mismatches": mismatches,
        "match_pct": match, "mismatch_pct": pct(mismatches, reads),
        "status": rate_status(match, reads, warn_below=None, critical_below=100.0 - max_mismatch,
                              min_volume=cfg.cutover.shadow_min_reads),
        "thresholds": {"mismatch_max_pct": max_mismatch, "min_reads": cfg.cutover.shadow_min_reads},
        "cohorts": cohorts,
        "hourly": _rate_points(raw["shadow_hourly"], "hour", w.hour_slots(), "reads_compared", "mismatches",
                               "match_pct"),
        "recent_mismatches": raw["shadow_mismatches"],
    }


def _path_rows(totals: list[dict[str, Any]], operation: str) -> list[dict[str, Any]]:
    out = []
    for path in ("old", "new"):
        r = next((t for t in totals if t["operation"] == operation and t["path"] == path), None) or {}
        req, err = r.get("requests", 0), r.get("errors", 0)
        rreq, rerr = r.get("recent_requests", 0), r.get("recent_errors", 0)
        out.append({"operation": operation, "path": path, "requests": req, "errors": err,
                    "error_pct": pct(err, req), "recent_requests": rreq, "recent_errors": rerr,
                    "recent_error_pct": pct(rerr, rreq),
                    "recent_p95_latency_ms": r.get("recent_p95_latency_ms")})
    return out


def error_increase_status(rows: list[dict[str, Any]], max_increase_points: float) -> tuple[str, float | None]:
    """New path's error rate minus the old path's (last hour), judged like the cutover gate."""
    old, new = rows
    if new["recent_error_pct"] is None:
        return NO_DATA, None
    increase = round(new["recent_error_pct"] - (old["recent_error_pct"] or 0.0), 4)
    return (CRITICAL if increase > max_increase_points else OK), increase


def _error_series(raw: dict[str, Any], operation: str) -> dict[str, list[dict[str, Any]]]:
    w: Windows = raw["windows"]
    series = {}
    for path in ("old", "new"):
        rows = [r for r in raw["path_hourly"] if r["operation"] == operation and r["path"] == path]
        points = []
        for p in fill(rows, "hour", w.hour_slots(), {"requests": None, "errors": None}):
            points.append({"t": p["t"], "requests": p["requests"], "errors": p["errors"],
                           "error_pct": pct(p["errors"], p["requests"])})
        series[path] = points
    return series


def read_rollout_section(raw: dict[str, Any], cfg: MigrationConfig, flags: dict[str, Any]) -> dict[str, Any]:
    paths = _path_rows(raw["path_totals"], "read")
    status, increase = error_increase_status(paths, cfg.cutover.error_rate_max_increase_points)
    return {
        "read_new_pct": flags.get("read_new_pct", 0),
        "rollout_steps": [s.pct for s in cfg.cutover.rollout],
        "paths": paths,
        "error_increase_points": increase,
        "status": status,
        "thresholds": {"error_rate_max_increase_points": cfg.cutover.error_rate_max_increase_points},
        "hourly": _error_series(raw, "read"),
    }


def write_state(flags: dict[str, Any]) -> tuple[str, str]:
    """(state key, sentence) for the write path the flags describe."""
    if flags.get("maintenance_mode"):
        return "maintenance", "Writes refused: maintenance mode is on (rollback scenario 3)"
    if flags.get("write_to_new"):
        if flags.get("keep_old_sync"):
            return "cut_over_syncing", "Cut over: writes go to the new tables; the old tables are kept in sync"
        return "cut_over", "Cut over: writes go to the new tables only"
    if flags.get("dual_write_enabled"):
        return "dual_write", "Not cut over: writes go to the old tables and are dual-written to the new ones"
    return "old_only", "Not cut over: writes go to the old tables only (dual-write off)"


def write_cutover_section(raw: dict[str, Any], cfg: MigrationConfig, flags: dict[str, Any]) -> dict[str, Any]:
    key, sentence = write_state(flags)
    paths = _path_rows(raw["path_totals"], "write")
    status, increase = error_increase_status(paths, cfg.cutover.error_rate_max_increase_points)
    return {
        "state": key, "description": sentence,
        "write_to_new": bool(flags.get("write_to_new", False)),
        "keep_old_sync": bool(flags.get("keep_old_sync", False)),
        "dual_write_enabled": bool(flags.get("dual_write_enabled", False)),
        "maintenance_mode": bool(flags.get("maintenance_mode", False)),
        "paths": paths, "error_increase_points": increase, "status": status,
        "hourly": _error_series(raw, "write"),
    }


def run_status(run: dict[str, Any]) -> str:
    """passed / failed / warning / running / unknown, from a consistency run row of any shape."""
    for key in ("status", "result", "outcome", "state"):
        value = run.get(key)
        if isinstance(value, str):
            v = value.strip().lower()
            for vocabulary, status in ((_PASSED, "passed"), (_FAILED, "failed"), (_WARNING, "warning"),
                                       (_RUNNING, "running")):
                if v in vocabulary:
                    return status
            return "unknown"
    for key in ("passed", "ok", "success", "consistent"):
        if isinstance(run.get(key), bool):
            return "passed" if run[key] else "failed"
    return "unknown"


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _utc_hour(t: datetime) -> datetime:
    """The UTC hour a run belongs to; a naive time (timestamp without time zone) is taken as UTC."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.replace(minute=0, second=0, microsecond=0)


_RUN_SKIP = {"id", "run_pk", "status", "result", "outcome", "state", "passed", "ok", "success", "consistent",
             "run_id", "data_docs", "checks"}


def run_figures(run: dict[str, Any], time_column: str) -> dict[str, Any]:
    """The short fields of a run worth showing (kind, counts, failed check names, duration).

    Top-level scalars and short lists first, then the scalars of nested objects (e.g. the
    consistency DAG's ``summary``: ``checked``, ``failed_checks``); ids, times and long text are left out.
    """
    out: dict[str, Any] = {}

    def add(key: str, value: Any) -> None:
        if key in _RUN_SKIP or key == time_column or key in out or value is None:
            return
        if isinstance(value, list):
            if value and all(isinstance(x, (str, int, float)) for x in value):
                out[key] = ", ".join(str(x) for x in value[:8]) + (" …" if len(value) > 8 else "")
        elif isinstance(value, (bool, int, float)):
            out[key] = value
        elif isinstance(value, str) and value and len(value) <= 80 and _parse_time(value) is None:
            out[key] = value

    nested = []
    for key, value in run.items():
        if isinstance(value, dict):
            nested.append(value)
        else:
            add(key, value)
    for obj in nested:
        for key, value in obj.items():
            if not isinstance(value, dict):
                add(key, value)
    started, finished = _parse_time(run.get("started_at")), _parse_time(run.get("finished_at"))
    if started and finished:
        out["duration_s"] = round((finished - started).total_seconds(), 1)
    return out


def consistency_section(raw: dict[str, Any]) -> dict[str, Any]:
    w: Windows = raw["windows"]
    info = raw["consistency"]
    slots = w.hour_slots()
    if not info["available"]:
        return {"available": False, "note": info["note"], "runs": [], "latest": None,
                "hourly": [{"t": s, "status": "none", "runs": 0} for s in slots]}
    time_column = info["time_column"]
    runs = []
    for run in info["runs"]:
        at = _parse_time(run.get(time_column))
        runs.append({"id": run.get("id"), "at": at, "status": run_status(run),
                     "label": run.get("kind") or run.get("entity") or "", "figures": run_figures(run, time_column)})
    hourly = []
    for slot in slots:
        in_hour = [r for r in runs if r["at"] is not None and _utc_hour(r["at"]) == slot]
        worst = max((r["status"] for r in in_hour), key=lambda s: _STATUS_RANK[s], default="none")
        hourly.append({"t": slot, "status": worst, "runs": len(in_hour)})
    # The card shows the latest *finished* run; one still running is listed but decides nothing yet.
    finished = [r for r in runs if r["status"] != "running"]
    return {"available": True, "note": info["note"], "runs": runs, "hourly": hourly,
            "latest": finished[0] if finished else (runs[0] if runs else None)}


def build(raw: dict[str, Any], cfg: MigrationConfig, airflow: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole view model (also the JSON endpoint's body).

    ``airflow``: the phase DAGs' latest runs from the Airflow layer (``phases.phases_section``);
    without it every phase's state is "unknown" (never guessed from the control tables).
    """
    airflow = airflow or {"available": False, "error": "Airflow's DAG runs were not read", "runs": {}}
    w: Windows = raw["windows"]
    flags = {f["name"]: f["value"] for f in raw["flags"]}
    return {
        "migration": cfg.name,
        "control_schema": cfg.control_schema,
        "connection": cfg.connections.legacy,
        "generated_at": w.now,
        "windows": {"rolling_start": w.window_start, "recent_start": w.recent_start,
                    "hours_start": w.hours_start, "minutes_start": w.minutes_start},
        "flags": raw["flags"],
        "dual_write": dual_write_section(raw, cfg, flags),
        "consistency": consistency_section(raw),
        "shadow": shadow_section(raw, cfg, flags),
        "read_rollout": read_rollout_section(raw, cfg, flags),
        "write_cutover": write_cutover_section(raw, cfg, flags),
        "airflow": {"available": bool(airflow.get("available")), "error": airflow.get("error"),
                    "base_url": airflow.get("base_url") or ""},
        "phases": phases.phases_section(raw, airflow),
        "alerts": raw["alerts"],
        "audit": raw["audit"],
        "audit_routine": raw.get("audit_routine", []),
    }
