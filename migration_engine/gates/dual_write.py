"""The dual-write health gate (seed 2.2 alerts; reused by phase 5 as "≥ 99 % for 48 h").

Reads ``dual_write_stats`` over a rolling window and decides, in this order:

1. ``critical`` - success rate below ``critical_below_pct`` (seed: < 90 %);
2. ``warning``  - success rate below ``warn_below_pct`` (seed: < 95 %), or the window's p95
   latency above ``latency_p95_warn_ms`` (seed: > 500 ms);
3. ``waiting``  - fail closed: fewer than ``min_attempts`` attempts, or a stretch of the window
   longer than ``max_gap`` without any data; or healthy but below ``min_success_pct`` (the pass
   bar, which a cutover gate raises to 99 %);
4. ``passed``   - enough data, no holes, success ≥ ``min_success_pct``, latency fine.

Severity is judged even on a window with holes (a 80 % success rate is alarming with or without a
gap); only a pass needs complete data. Every threshold defaults to the config's ``dual_write``
section and can be overridden per gate through params, e.g. the cutover checklist:

    GateSensor(gate="dual_write_health",
               gate_params={"min_success_pct": 99, "window": "48h"}, ...)

Duration params: a string with a unit (``"48h"``) is read like the config and multiplied by
``time_scale``; a number (or a numeric string, e.g. from a template) is seconds, taken literally.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from migration_engine.config import MigrationConfig, parse_duration
from migration_engine.gates import GateResult, register
from migration_engine.gates.window import data_problems, fmt_duration, window_stats

GATE = "dual_write_health"
STATUS_RANK = {"passed": 0, "waiting": 1, "warning": 2, "critical": 3, "failed": 4}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def duration_param(value: Any, name: str, cfg: MigrationConfig) -> timedelta:
    """A duration gate param: ``"48h"`` (scaled like the config), seconds (literal) or a timedelta."""
    if isinstance(value, timedelta):
        td = value
    elif isinstance(value, str) and _is_number(value):  # a templated number: seconds
        td = timedelta(seconds=float(value))
    elif isinstance(value, str):
        try:
            td = parse_duration(value) * cfg.time_scale
        except ValueError:
            raise ValueError(f"gate param {name}: {value!r} is not a duration like '1h' or '48h'") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        td = timedelta(seconds=float(value))
    else:
        raise ValueError(f"gate param {name}: expected a duration ('1h') or seconds, got {value!r}")
    if td <= timedelta(0):
        raise ValueError(f"gate param {name} must be a positive duration, got {value!r}")
    return td


def number_param(value: Any, name: str, *, lo: float | None = None, hi: float | None = None) -> float:
    """A numeric gate param; templated params arrive as strings ("99"), so those are accepted too."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"gate param {name}: expected a number, got {value!r}") from None
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ValueError(f"gate param {name} must be between {lo} and {hi}, got {value!r}")
    return number


def _settings(cfg: MigrationConfig, params: dict[str, Any]) -> dict[str, Any]:
    dw = cfg.dual_write
    known = {"entity", "window", "min_success_pct", "warn_below_pct", "critical_below_pct",
             "latency_p95_warn_ms", "min_attempts", "max_gap"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{GATE}: unknown gate param(s) {unknown}; known: {sorted(known)}")
    s = {
        "window": duration_param(params.get("window", dw.window), "window", cfg),
        "max_gap": duration_param(params.get("max_gap", dw.max_gap), "max_gap", cfg),
        "warn_below_pct": number_param(params.get("warn_below_pct", dw.warn_below_pct), "warn_below_pct",
                                       lo=0, hi=100),
        "critical_below_pct": number_param(params.get("critical_below_pct", dw.critical_below_pct),
                                           "critical_below_pct", lo=0, hi=100),
        "latency_p95_warn_ms": number_param(params.get("latency_p95_warn_ms", dw.latency_p95_warn_ms),
                                            "latency_p95_warn_ms", lo=0),
        "min_attempts": int(number_param(params.get("min_attempts", dw.min_attempts), "min_attempts", lo=1)),
    }
    s["min_success_pct"] = number_param(params.get("min_success_pct", s["warn_below_pct"]), "min_success_pct",
                                        lo=0, hi=100)
    if s["critical_below_pct"] > s["warn_below_pct"]:
        raise ValueError(f"{GATE}: critical_below_pct {s['critical_below_pct']} is above warn_below_pct "
                         f"{s['warn_below_pct']}")
    entity = params.get("entity")
    if entity is None:
        s["entities"] = list(cfg.entities)
    elif isinstance(entity, str):
        s["entities"] = [entity]
    else:
        s["entities"] = list(entity)
    unknown_entities = [e for e in s["entities"] if e not in cfg.entities]
    if unknown_entities:
        raise ValueError(f"{GATE}: entity {unknown_entities} not in the config; known: {sorted(cfg.entities)}")
    return s


def _evaluate_entity(conn, cfg: MigrationConfig, now: datetime, entity: str, s: dict[str, Any]
                     ) -> tuple[str, list[str], dict[str, Any]]:
    ws = window_stats(
        conn, schema=cfg.control_schema, table="dual_write_stats", total_column="attempts",
        bad_column="failures", latency_column="p95_latency_ms", start=now - s["window"], end=now,
        max_gap=s["max_gap"], filters={"entity": entity})
    figures: dict[str, Any] = {"entity": entity}
    ok_pct = ws.ok_pct
    figures["success_pct"] = None if ok_pct is None else round(ok_pct, 3)
    figures["attempts"] = ws.total
    figures["failures"] = ws.bad
    figures.update(ws.figures())
    figures.pop("events", None)
    figures.pop("bad_events", None)

    span = f"over the last {fmt_duration(ws.window)}"
    rate = (f"{ok_pct:.2f}% success ({ws.total - ws.bad:,}/{ws.total:,} attempts) {span}"
            if ok_pct is not None else f"no attempts {span}")
    severe: list[str] = []
    status = "passed"
    if ok_pct is not None and ok_pct < s["critical_below_pct"]:
        status = "critical"
        severe.append(f"dual-write {entity}: {rate}, below the critical threshold {s['critical_below_pct']:g}%")
    elif ok_pct is not None and ok_pct < s["warn_below_pct"]:
        status = "warning"
        severe.append(f"dual-write {entity}: {rate}, below the warning threshold {s['warn_below_pct']:g}%")
    if ws.p95_latency_ms is not None and ws.p95_latency_ms > s["latency_p95_warn_ms"]:
        if status == "passed":
            status = "warning"
        severe.append(f"dual-write {entity}: p95 latency {ws.p95_latency_ms:.0f} ms {span}, above "
                      f"{s['latency_p95_warn_ms']:g} ms")

    problems = [f"dual-write {entity}: {p}" for p in data_problems(ws, min_total=s["min_attempts"],
                                                                       what="dual-write attempts")]
    below_bar = (ok_pct is not None and ok_pct < s["min_success_pct"] and status == "passed")
    if below_bar:
        problems.append(f"dual-write {entity}: {rate}, below the required {s['min_success_pct']:g}%")
    if status == "passed" and problems:
        status = "waiting"
    reasons = severe + problems
    if not reasons:
        reasons = [f"dual-write {entity}: {rate} (required ≥ {s['min_success_pct']:g}%), "
                   f"p95 {figures.get('p95_latency_ms', '-')} ms, no gap longer than {fmt_duration(s['max_gap'])}"]
    return status, reasons, figures


@register(GATE)
def dual_write_health(conn, cfg: MigrationConfig, now: datetime, **params: Any) -> GateResult:
    """Evaluate dual-write health for one entity (param ``entity``) or every configured entity."""
    s = _settings(cfg, params)
    thresholds = {
        "min_success_pct": s["min_success_pct"], "warn_below_pct": s["warn_below_pct"],
        "critical_below_pct": s["critical_below_pct"], "latency_p95_warn_ms": s["latency_p95_warn_ms"],
        "min_attempts": s["min_attempts"],
    }
    results = [_evaluate_entity(conn, cfg, now, e, s) for e in s["entities"]]
    status = max((r[0] for r in results), key=STATUS_RANK.__getitem__)
    # worst entity first: the reason leads with what decided the status
    ordered = sorted(results, key=lambda r: -STATUS_RANK[r[0]])
    reasons = [reason for _st, rs, _f in ordered for reason in rs]
    if len(results) == 1:
        figures = {**results[0][2], **thresholds}
    else:
        figures = {"entities": {f["entity"]: {k: v for k, v in f.items() if k != "entity"}
                                for _s, _r, f in results}, **thresholds}
        worst = [f for st, _r, f in results if st == status]
        figures["worst_entity"] = worst[0]["entity"]
        figures["success_pct"] = worst[0]["success_pct"]
    return GateResult(GATE, status, "; ".join(dict.fromkeys(reasons)), figures)
