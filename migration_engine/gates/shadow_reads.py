"""The shadow-read gate (seed 4.1 and the 5.1 checklist: "shadow read mismatches < 0.1 %").

Reads ``shadow_read_stats`` (the application's per-minute comparisons, by cohort) over
``cutover.shadow_window`` with the shared window helper (``gates/window.py``: totals and gap
detection) and decides, per entity, in this order:

1. ``critical`` - enough reads (``shadow_min_reads``) and a mismatch rate at or above
   ``shadow_mismatch_max_pct``: the new read path returns different data; waiting will not fix it.
2. ``warning``  - the rate is above the bar but there are too few reads to be sure yet.
3. ``waiting``  - fail closed: fewer than ``shadow_min_reads`` reads, or a stretch of the window
   longer than ``max_gap`` (default ``dual_write.max_gap``) without any shadow reads.
4. ``passed``   - enough reads, no holes, mismatch rate below the bar.

Figures: totals, the window, a breakdown by cohort (reads, mismatches, rate; cohorts over the bar
are named in the reason) and the latest stored example mismatches (``shadow_read_mismatches``:
key, cohort, differing fields), so the operator sees *what* differs without opening a database.

Params (all optional): ``entity`` (name or list; default every configured entity),
``max_mismatch_pct``, ``min_reads``, ``window``, ``max_gap``, ``examples`` (how many; default
``consistency.max_reported_keys``). Phase 5 reuses this gate with its own params.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.gates import GateResult, register
from migration_engine.gates.dual_write import STATUS_RANK, duration_param, number_param
from migration_engine.gates.window import data_problems, fmt_duration, window_stats

GATE = "shadow_reads"
_KNOWN = {"entity", "max_mismatch_pct", "min_reads", "window", "max_gap", "examples"}


def _settings(cfg: MigrationConfig, params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise ValueError(f"{GATE}: unknown gate param(s) {unknown}; known: {sorted(_KNOWN)}")
    co = cfg.cutover
    s = {
        "window": duration_param(params.get("window", co.shadow_window), "window", cfg),
        "max_gap": duration_param(params.get("max_gap", cfg.dual_write.max_gap), "max_gap", cfg),
        "max_mismatch_pct": number_param(params.get("max_mismatch_pct", co.shadow_mismatch_max_pct),
                                         "max_mismatch_pct", lo=0, hi=100),
        "min_reads": int(number_param(params.get("min_reads", co.shadow_min_reads), "min_reads", lo=1)),
        "examples": int(number_param(params.get("examples", cfg.consistency.max_reported_keys), "examples",
                                     lo=0, hi=1000)),
    }
    entity = params.get("entity")
    s["entities"] = list(cfg.entities) if entity is None else ([entity] if isinstance(entity, str) else list(entity))
    unknown_entities = [e for e in s["entities"] if e not in cfg.entities]
    if unknown_entities:
        raise ValueError(f"{GATE}: entity {unknown_entities} not in the config; known: {sorted(cfg.entities)}")
    return s


def _fields(diffs: Any) -> str:
    return ", ".join(sorted(diffs)) if isinstance(diffs, dict) else str(diffs)


def _pct(bad: int, total: int) -> float | None:
    return None if total == 0 else 100.0 * bad / total


def _cohorts(conn, cfg: MigrationConfig, entity: str, start: datetime, end: datetime, bar: float) -> dict:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/shadow_cohorts.sql", {"schema": cfg.control_schema},
                     {"entity": entity, "window_start": start, "window_end": end})
        rows = cur.fetchall()
    out = {}
    for cohort, reads, mismatches in rows:
        pct = _pct(int(mismatches), int(reads))
        out[cohort] = {"reads": int(reads), "mismatches": int(mismatches),
                       "mismatch_pct": None if pct is None else round(pct, 4),
                       "over_bar": pct is not None and pct >= bar}
    return out


def _examples(conn, cfg: MigrationConfig, entity: str, start: datetime, end: datetime, n: int) -> list[dict]:
    if n <= 0:
        return []
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/shadow_examples.sql", {"schema": cfg.control_schema},
                     {"entity": entity, "window_start": start, "window_end": end, "row_limit": n})
        rows = cur.fetchall()
    return [{"key": key, "cohort": cohort, "diffs": diffs, "observed_at": at.isoformat(timespec="seconds")}
            for key, cohort, diffs, at in rows]


def _evaluate_entity(conn, cfg: MigrationConfig, now: datetime, entity: str, s: dict[str, Any]
                     ) -> tuple[str, list[str], dict[str, Any]]:
    start = now - s["window"]
    ws = window_stats(conn, schema=cfg.control_schema, table="shadow_read_stats", total_column="reads_compared",
                      bad_column="mismatches", start=start, end=now, max_gap=s["max_gap"],
                      filters={"entity": entity})
    bar = s["max_mismatch_pct"]
    pct = ws.bad_pct
    cohorts = _cohorts(conn, cfg, entity, start, now, bar)
    examples = _examples(conn, cfg, entity, start, now, s["examples"])
    figures: dict[str, Any] = {"entity": entity, "reads_compared": ws.total, "mismatches": ws.bad,
                               "mismatch_pct": None if pct is None else round(pct, 4)}
    figures.update(ws.figures())
    figures.pop("events", None)
    figures.pop("bad_events", None)
    figures["cohorts"] = cohorts
    figures["examples"] = examples

    span = f"over the last {fmt_duration(ws.window)}"
    rate = (f"{pct:.3f}% mismatches ({ws.bad:,}/{ws.total:,} shadow reads) {span}" if pct is not None
            else f"no shadow reads {span}")
    problems = [f"shadow reads {entity}: {p}" for p in data_problems(ws, min_total=s["min_reads"],
                                                                         what="shadow reads")]
    over = pct is not None and pct >= bar
    bad_cohorts = [f"{c} {v['mismatch_pct']}% ({v['mismatches']}/{v['reads']})" for c, v in cohorts.items()
                   if v["over_bar"]]
    reasons: list[str] = []
    if over and ws.total >= s["min_reads"]:
        status = "critical"
        reasons.append(f"shadow reads {entity}: {rate}, at or above the maximum {bar:g}%")
    elif over:
        status = "warning"
        reasons.append(f"shadow reads {entity}: {rate}, above the maximum {bar:g}% (not enough reads to be sure)")
    else:
        status = "waiting" if problems else "passed"
    reasons += problems
    if bad_cohorts:
        reasons.append(f"cohorts at or above {bar:g}%: {', '.join(bad_cohorts)}")
    if examples and status != "passed":
        reasons.append("latest mismatches: " + "; ".join(
            f"{e['key']} ({e['cohort']}: {_fields(e['diffs'])})" for e in examples[:5]))
    if status == "passed":
        reasons.insert(0, f"shadow reads {entity}: {rate} (required < {bar:g}%, at least {s['min_reads']:,} reads, "
                          f"no gap longer than {fmt_duration(s['max_gap'])})")
    return status, reasons, figures


@register(GATE)
def shadow_reads(conn, cfg: MigrationConfig, now: datetime, **params: Any) -> GateResult:
    """Shadow-read mismatch rate below the bar over the window, for every configured entity."""
    s = _settings(cfg, params)
    thresholds = {"max_mismatch_pct": s["max_mismatch_pct"], "min_reads": s["min_reads"]}
    results = [_evaluate_entity(conn, cfg, now, e, s) for e in s["entities"]]
    status = max((r[0] for r in results), key=STATUS_RANK.__getitem__)
    ordered = sorted(results, key=lambda r: -STATUS_RANK[r[0]])
    reasons = [reason for _st, rs, _f in ordered for reason in rs]
    if len(results) == 1:
        figures = {**results[0][2], **thresholds}
    else:
        figures = {"entities": {f["entity"]: {k: v for k, v in f.items() if k != "entity"} for _s, _r, f in results},
                   **thresholds}
    return GateResult(GATE, status, "; ".join(dict.fromkeys(reasons)), figures)
