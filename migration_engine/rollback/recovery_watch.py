"""The recovery watch of rollback scenarios 1 and 2 (see ``rollback.health``): is the old path healthy?

The decision half of the deferrable watch (the loop is
``migration_engine.airflow.triggers.RecoveryTrigger``). The trigger first waits the flag's
propagation time (the application's flag cache); the first poll captures the counters, every later
poll judges the interval since the previous capture, until one interval shows recovery (event
``recovered``) or the deadline passes (``expired``: event ``timeout`` with the last figures). Each
judged interval is recorded in ``gate_results`` (gate ``rollback_recovery``). A failed check is
retried at the next interval until the deadline (fail closed: never "recovered" without data).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from migration_engine import control, db
from migration_engine.gates import GateResult
from migration_engine.gates.error_rate import SNAPSHOT_LOOKBACK
from migration_engine.rollback.health import capture, evaluate
from migration_engine.watch import Payload

log = logging.getLogger(__name__)


class RecoveryWatch:
    def __init__(self, *, conn_id: str, schema: str, entities: list[str], mode: str, baseline_pct: float | None,
                 max_increase_points: float, min_requests: int, dag_id: str | None = None,
                 run_id: str | None = None, task_id: str | None = None) -> None:
        self.conn_id, self.schema, self.entities, self.mode = conn_id, schema, list(entities), mode
        self.baseline_pct, self.max_increase_points = baseline_pct, float(max_increase_points)
        self.min_requests = int(min_requests)
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.previous: dict[str, Any] | None = None
        self.last: GateResult | None = None
        self.last_error: str | None = None
        self.checks = 0

    def _connect(self):
        return db.connect(self.conn_id, application_name="migration-rollback-verify")

    def start(self) -> Payload | None:
        return None

    def poll(self) -> Payload | None:
        try:
            if self.previous is None:
                self.previous = self._capture(datetime.now(UTC) - SNAPSHOT_LOOKBACK)
                return None
            self.last, self.previous = self._check(self.previous)
            self.checks += 1
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - a failed check is retried until the deadline
            self.last_error = f"{type(exc).__name__}: {str(exc).strip()}"
            log.warning("recovery check failed: %s", self.last_error)
            return None
        if self.last.status == "passed":
            return {"status": "recovered", "reason": self.last.reason, "figures": self.last.figures,
                    "checks": self.checks}
        return None

    def expired(self) -> Payload:
        last = self.last
        reason = (last.reason if last else "no check completed") + (
            f"; last check error: {self.last_error}" if self.last_error else "")
        return {"status": "timeout", "reason": reason, "figures": last.figures if last else {}, "checks": self.checks}

    def _capture(self, since: datetime) -> dict[str, Any]:
        conn = self._connect()
        try:
            return capture(conn, self.schema, self.entities, self.mode, since=since)
        finally:
            conn.close()

    def _check(self, previous: dict[str, Any]) -> tuple[GateResult, dict[str, Any]]:
        conn = self._connect()
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
