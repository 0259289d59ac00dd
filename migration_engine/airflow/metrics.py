"""Metrics out: the migration's figures as Airflow metrics (StatsD, Datadog or OpenTelemetry, as
Airflow's ``[metrics]`` section configures them), emitted from the Airflow layer only.

The engine returns the figures (``migration_engine.perf.figures.collect``: gate status, backfill
rate and progress, shadow mismatch %, error rate and p95 per path, database figures of the latest
performance sample); this module hands each to ``airflow.sdk.observability.stats.gauge`` - the
same client the task runner initialises from ``[metrics] statsd_on`` / ``otel_on`` - so no second
metrics configuration exists. With metrics off, Airflow's ``NoStatsLogger`` drops them.
Names and tags: docs/metrics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


def install() -> None:
    """Make this process's engine emit through Airflow's metrics client at the moment things happen
    (a gate evaluation recorded, a backfill checkpoint: ``migration_engine.telemetry``). Called when
    the layer is imported, so workers, the triggerer (deferred gate polls) and dag.test() all emit."""
    from migration_engine import telemetry

    telemetry.install(emit)


def emit(metrics: Iterable[Any]) -> int:
    """Send each ``Metric`` as a gauge (with its tags); returns how many were sent."""
    from airflow.sdk.observability import stats

    sent = 0
    for m in metrics:
        stats.gauge(m.name, m.value, tags=m.tags)
        sent += 1
    return sent


def emit_migration_metrics() -> dict[str, Any]:
    """The sampler DAG's task: read every figure from the control schema and emit it."""
    from migration_engine.airflow.tasks import on_legacy
    from migration_engine.perf import figures

    found = on_legacy(lambda conn, cfg, **_: figures.collect(conn, cfg, datetime.now(UTC)))
    sent = emit(found)
    log.info("emitted %d migration metrics: %s", sent, ", ".join(sorted({m.name for m in found}))[:2000])
    return {"emitted": sent, "names": sorted({m.name for m in found})}
