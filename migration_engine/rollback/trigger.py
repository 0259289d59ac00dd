"""Deferrable recovery watch for rollback scenarios 1 and 2 (see ``rollback.health``).

Waits ``propagation_s`` (the application's flag cache), captures the counters, then every
``interval_s`` judges the interval since the previous capture until one interval shows recovery
(event ``recovered``) or ``deadline`` passes (event ``timeout`` with the last figures). Each check
is recorded in ``gate_results`` (gate ``rollback_recovery``). Database work runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)

CLASSPATH = "migration_engine.rollback.trigger.RecoveryTrigger"


class RecoveryTrigger(BaseTrigger):
    def __init__(self, *, conn_id: str, schema: str, entities: list[str], mode: str, deadline: str,
                 interval_s: float, propagation_s: float, baseline_pct: float | None, max_increase_points: float,
                 min_requests: int, dag_id: str | None = None, run_id: str | None = None,
                 task_id: str | None = None) -> None:
        super().__init__()
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.conn_id, self.schema, self.entities, self.mode = conn_id, schema, list(entities), mode
        self.deadline, self.interval_s, self.propagation_s = deadline, float(interval_s), float(propagation_s)
        self.baseline_pct, self.max_increase_points = baseline_pct, float(max_increase_points)
        self.min_requests = int(min_requests)
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "conn_id": self.conn_id, "schema": self.schema, "entities": self.entities, "mode": self.mode,
            "deadline": self.deadline, "interval_s": self.interval_s, "propagation_s": self.propagation_s,
            "baseline_pct": self.baseline_pct, "max_increase_points": self.max_increase_points,
            "min_requests": self.min_requests, "dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id,
        }

    def _capture(self, since: datetime) -> dict[str, Any]:
        from migration_engine import db
        from migration_engine.rollback.health import capture

        conn = db.connect(self.conn_id, application_name="migration-rollback-verify")
        try:
            return capture(conn, self.schema, self.entities, self.mode, since=since)
        finally:
            conn.close()

    def _check(self, previous: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        from migration_engine import control, db
        from migration_engine.rollback.health import capture, evaluate

        conn = db.connect(self.conn_id, application_name="migration-rollback-verify")
        try:
            current = capture(conn, self.schema, self.entities, self.mode,
                              since=datetime.fromisoformat(previous["since"]))
            result = evaluate(previous, current, self.mode, baseline_pct=self.baseline_pct,
                              max_increase_points=self.max_increase_points, min_requests=self.min_requests)
            try:
                control.record_gate_result(conn, self.schema, gate=result.gate, status=result.status,
                                           figures={**result.figures, "task_id": self.task_id},
                                           reason=result.reason, dag_id=self.dag_id, run_id=self.run_id)
            except Exception as exc:  # noqa: BLE001
                log.error("could not record the check in gate_results: %s", exc)
            return result, current
        finally:
            conn.close()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from migration_engine.gates.error_rate import SNAPSHOT_LOOKBACK

        deadline = datetime.fromisoformat(self.deadline)
        await asyncio.sleep(self.propagation_s)
        checks, last, last_error = 0, None, None
        previous = None
        while True:
            now = datetime.now(UTC)
            try:
                if previous is None:
                    previous = await asyncio.to_thread(self._capture, now - SNAPSHOT_LOOKBACK)
                else:
                    last, previous = await asyncio.to_thread(self._check, previous)
                    checks += 1
                    last_error = None
                    if last.status == "passed":
                        yield TriggerEvent({"status": "recovered", "reason": last.reason, "figures": last.figures,
                                            "checks": checks})
                        return
            except Exception as exc:  # noqa: BLE001 - a failed check is retried until the deadline
                last_error = f"{type(exc).__name__}: {str(exc).strip()}"
                log.warning("recovery check failed: %s", last_error)
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                reason = (last.reason if last else "no check completed") + (
                    f"; last check error: {last_error}" if last_error else "")
                yield TriggerEvent({"status": "timeout", "reason": reason, "figures": last.figures if last else {},
                                    "checks": checks})
                return
            await asyncio.sleep(min(self.interval_s, remaining))
