"""Metrics at the moment things happen: the engine hands figures to an *emitter* the Airflow layer
installs (``migration_engine.airflow.metrics.install``: Airflow's StatsD/OpenTelemetry client), so
nothing below the layer imports Airflow and the CLI / unit tests (no emitter) send nothing.

Emitted when they happen, not only once per sampler run (docs/metrics.md):

* a gate evaluation is recorded (``control.record_gate_result``: machine gates, the checklist, holds,
  recovery watches, metric alerts): ``zdm.gate.<gate>.status``; a metric alert's measured value and
  threshold; a shadow-read gate's mismatch %;
* a backfill checkpoint, at most once per ``backfill.progress_interval`` per range (and at its end):
  the pass's progress % and rows/s (:mod:`migration_engine.backfill.engine`).

Emitting is best effort: an emitter that raises is logged once per kind of error and never fails the
gate, the checkpoint or the task that produced the figure.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "zdm"
# gate_results.status -> a number a dashboard can threshold on (higher is worse)
GATE_STATUS = {"passed": 0, "waiting": 1, "warning": 2, "critical": 3, "failed": 4}
METRIC_ALERT_PREFIX = "metric_alert:"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    tags: dict[str, str] = field(default_factory=dict)


Emitter = Callable[[list[Metric]], Any]

_lock = threading.Lock()
_emitter: Emitter | None = None
_warned: set[str] = set()


def part(value: Any) -> str:
    """One dimension of a metric name: dots would add StatsD hierarchy levels, so they become ``__``."""
    return _UNSAFE.sub("_", str(value).replace(".", "__")) or "_"


def name(*parts: Any) -> str:
    return ".".join([PREFIX, *parts])


def install(emitter: Emitter | None) -> None:
    """Set (or with ``None`` remove) the process's emitter; the Airflow layer calls it on import."""
    global _emitter
    with _lock:
        _emitter = emitter


def active() -> bool:
    """Whether anything listens (callers skip work, e.g. a read, when nothing would be sent)."""
    return _emitter is not None


def emit(metrics: Iterable[Metric]) -> int:
    """Hand ``metrics`` to the emitter; returns how many were handed over (0 without one). Never raises."""
    emitter = _emitter
    batch = list(metrics)
    if emitter is None or not batch:
        return 0
    try:
        emitter(batch)
        return len(batch)
    except Exception as exc:  # noqa: BLE001 - a metric must never fail the work it describes
        kind = type(exc).__name__
        if kind not in _warned:
            _warned.add(kind)
            log.warning("metrics not emitted (%s: %s); further %s errors are not logged", kind, exc, kind)
        return 0


def gate_metrics(gate: str, status: str, figures: dict[str, Any]) -> list[Metric]:
    """What one recorded gate evaluation says, as metrics (the same names as the sampler's)."""
    tags = {"gate": gate, "status": status}
    out = [Metric(name("gate", part(gate), "status"), GATE_STATUS.get(status, 4), tags)]
    figures = figures or {}
    if gate.startswith(METRIC_ALERT_PREFIX):
        alert = gate[len(METRIC_ALERT_PREFIX):]
        atags = {"alert": alert, "operation": str(figures.get("operation")), "metric": str(figures.get("metric")),
                 "severity": str(figures.get("severity")), "status": status}
        base = ("metric_alert", part(alert))
        if isinstance(figures.get("value"), int | float):
            out.append(Metric(name(*base, "value"), float(figures["value"]), atags))
        if isinstance(figures.get("threshold"), int | float):
            out.append(Metric(name(*base, "threshold"), float(figures["threshold"]), atags))
        out.append(Metric(name(*base, "firing"), 1.0 if status in ("warning", "critical") else 0.0, atags))
    entity = figures.get("entity")
    if entity and isinstance(figures.get("mismatch_pct"), int | float):
        out.append(Metric(name("shadow", part(entity), "mismatch_pct"), float(figures["mismatch_pct"]),
                          {"entity": str(entity)}))
    return out


def backfill_metrics(rows: list[dict]) -> list[Metric]:
    """Each entity's latest pass (rows of include/sql/perf/metrics_backfill.sql): rate, progress."""
    out = []
    for r in rows:
        e, tags = part(r["entity"]), {"entity": r["entity"], "status": r["status"]}
        done = r["status"] == "done"
        progress = 100.0 if done else _pct(r["rows_read"], r["rows_total"])
        out.append(Metric(name("backfill", e, "rows_per_second"), 0.0 if done else float(r["rows_per_second"]), tags))
        out.append(Metric(name("backfill", e, "rows_written"), float(r["rows_written"]), tags))
        out.append(Metric(name("backfill", e, "running"), 1.0 if r["status"] == "running" else 0.0, tags))
        if progress is not None:
            out.append(Metric(name("backfill", e, "progress_pct"), min(progress, 100.0), tags))
    return out


def _pct(part_: float, whole: float) -> float | None:
    return None if not whole else 100.0 * part_ / whole


def gate_evaluated(gate: str, status: str, figures: dict[str, Any]) -> int:
    """Called once per recorded gate evaluation."""
    if _emitter is None:
        return 0
    return emit(gate_metrics(gate, status, figures))
