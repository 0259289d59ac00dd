"""The deferrable half of a gate: a trigger that evaluates the gate every poke interval.

Runs in Airflow's triggerer (an asyncio loop shared by thousands of triggers), so the evaluation -
synchronous psycopg2 work, and a Slack call on a status change - runs in a thread
(``asyncio.to_thread``) and the loop only ever awaits. While it waits the task instance is
``deferred``: no worker slot, no pool slot, for hours or days.

Fires (one ``TriggerEvent``, then returns) when:

* the gate passes                                   -> ``{"status": "passed", ...}``
* the gate's status is in ``fail_on`` (default critical) -> ``{"status": "critical", ...}``
* the gate cannot be evaluated (bad gate or params, or ``max_consecutive_errors`` errors in a row)
                                                    -> ``{"status": "failed", ...}``
* ``deadline`` (ISO UTC) passes without a pass      -> ``{"status": "timeout", ...}`` with the last
  evaluation, so the task fails with the figures instead of a bare "deferral timed out".

Every evaluation is written to ``gate_results``; warning/critical are paged only on a status
change (see :class:`migration_engine.gates.runner.GateMonitor`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from migration_engine.gates.runner import Evaluation, GateMonitor

CLASSPATH = "migration_engine.gates.trigger.GateTrigger"


class GateTrigger(BaseTrigger):
    def __init__(
        self,
        gate: str,
        gate_params: dict[str, Any] | None = None,
        *,
        label: str | None = None,
        poke_interval: float = 60.0,
        deadline: str | None = None,
        fail_on: list[str] | tuple[str, ...] = ("critical",),
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        alert: bool = True,
        max_consecutive_errors: int = 5,
    ) -> None:
        super().__init__()
        if poke_interval <= 0:
            raise ValueError(f"poke_interval must be positive, got {poke_interval!r}")
        self.gate = gate
        self.gate_params = dict(gate_params or {})
        self.label = label
        self.poke_interval = float(poke_interval)
        self.deadline = deadline
        self.fail_on = list(fail_on)
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.alert = alert
        self.max_consecutive_errors = int(max_consecutive_errors)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "gate": self.gate, "gate_params": self.gate_params, "label": self.label,
            "poke_interval": self.poke_interval, "deadline": self.deadline, "fail_on": self.fail_on,
            "dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id, "alert": self.alert,
            "max_consecutive_errors": self.max_consecutive_errors,
        }

    def _deadline(self) -> datetime | None:
        if not self.deadline:
            return None
        dl = datetime.fromisoformat(self.deadline)
        return dl if dl.tzinfo else dl.replace(tzinfo=UTC)

    def _event(self, status: str, ev: Evaluation | None, evaluations: int, reason: str | None = None
               ) -> TriggerEvent:
        payload = ev.payload() if ev else {"status": status, "reason": "", "figures": {}, "gate": self.gate,
                                           "gate_result_id": None}
        payload.update({"gate_status": payload["status"], "status": status, "label": self.label or self.gate,
                        "evaluations": evaluations})
        if reason:
            payload["reason"] = reason
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            monitor = await asyncio.to_thread(
                GateMonitor, self.gate, self.gate_params, label=self.label, dag_id=self.dag_id,
                run_id=self.run_id, task_id=self.task_id, alert=self.alert)
        except ValueError as exc:  # unknown gate: nothing to wait for
            yield self._event("failed", None, 0, reason=str(exc))
            return
        deadline = self._deadline()
        while True:
            ev = await asyncio.to_thread(monitor.evaluate)
            n = monitor.evaluations
            status = ev.result.status
            self.log.info("gate %s evaluation %d: %s - %s", monitor.label, n, status, ev.result.reason)
            if ev.error is not None:
                if ev.permanent or monitor.consecutive_errors >= self.max_consecutive_errors:
                    yield self._event("failed", ev, n)
                    return
            elif status == "passed":
                yield self._event("passed", ev, n)
                return
            elif status in self.fail_on:
                yield self._event(status, ev, n)
                return
            now = datetime.now(UTC)
            if deadline is not None and now >= deadline:
                yield self._event("timeout", ev, n, reason=(
                    f"gate {monitor.label} did not pass by {deadline.isoformat(timespec='seconds')} "
                    f"after {n} evaluation(s); last status {status}: {ev.result.reason}"))
                return
            pause = self.poke_interval
            if deadline is not None:  # evaluate once more exactly at the deadline
                pause = min(pause, max(0.0, (deadline - now).total_seconds()))
            await asyncio.sleep(pause)
