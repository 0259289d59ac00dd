"""A gate waited on: evaluate every poke interval until it passes, fails or the deadline passes.

The decision half of the deferrable gate (the loop is ``migration_engine.airflow.triggers.GateTrigger``).
Each poll evaluates through :class:`~migration_engine.gates.runner.GateMonitor`, so every
evaluation lands in ``gate_results`` and Slack is paged on a status change only. It fires:

* the gate passes                                   -> ``{"status": "passed", ...}``
* the gate's status is in ``fail_on`` (default critical) -> ``{"status": "critical", ...}``
* the gate cannot be evaluated (bad gate or params, or ``max_consecutive_errors`` errors in a row)
                                                    -> ``{"status": "failed", ...}``
* the deadline passes without a pass (``expired``)  -> ``{"status": "timeout", ...}`` with the last
  evaluation, so the task fails with the figures instead of a bare "deferral timed out".

Fail closed: no data, thin data or an unreachable database never passes.

Logs: one line per evaluation at most. A status change is logged at WARNING with the old and new
status (the line that matters); an evaluation with the same status as the last one is logged at
DEBUG only, and every ``SUMMARY_EVERY`` repeats an INFO line summarises them ("still waiting after
N evaluations since ..."). At demo speed (dozens of evaluations a minute) the log stays readable.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from migration_engine.gates.runner import Evaluation, GateMonitor
from migration_engine.watch import Payload

log = logging.getLogger(__name__)

SUMMARY_EVERY = 10  # repeats of one status between two INFO summary lines


class GateWatch:
    def __init__(self, gate: str, gate_params: dict[str, Any] | None = None, *, label: str | None = None,
                 fail_on: list[str] | tuple[str, ...] = ("critical",), dag_id: str | None = None,
                 run_id: str | None = None, task_id: str | None = None, alert: bool = True,
                 max_consecutive_errors: int = 5, deadline_text: str | None = None) -> None:
        self.gate, self.gate_params, self.label = gate, dict(gate_params or {}), label
        self.fail_on = list(fail_on)
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.alert = alert
        self.max_consecutive_errors = int(max_consecutive_errors)
        self.deadline_text = deadline_text
        self.monitor: GateMonitor | None = None
        self.last: Evaluation | None = None
        self.repeats = 0  # evaluations with the same status since it was last logged as a change
        self.status_since: datetime | None = None

    def _event(self, status: str, ev: Evaluation | None, reason: str | None = None) -> Payload:
        payload = ev.payload() if ev else {"status": status, "reason": "", "figures": {}, "gate": self.gate,
                                           "gate_result_id": None}
        payload.update({"gate_status": payload["status"], "status": status, "label": self.label or self.gate,
                        "evaluations": self.monitor.evaluations if self.monitor else 0})
        if reason:
            payload["reason"] = reason
        return payload

    def start(self) -> Payload | None:
        try:
            self.monitor = GateMonitor(self.gate, self.gate_params, label=self.label, dag_id=self.dag_id,
                                       run_id=self.run_id, task_id=self.task_id, alert=self.alert)
        except ValueError as exc:  # unknown gate: nothing to wait for
            return self._event("failed", None, reason=str(exc))
        return None

    def poll(self) -> Payload | None:
        assert self.monitor is not None, "start() first"
        previous = self.last.result.status if self.last else None
        ev = self.last = self.monitor.evaluate()
        status = ev.result.status
        self._log(previous, ev)
        if ev.error is not None:
            if ev.permanent or self.monitor.consecutive_errors >= self.max_consecutive_errors:
                return self._event("failed", ev)
            return None
        if status == "passed" or status in self.fail_on:
            return self._event(status, ev)
        return None

    def _log(self, previous: str | None, ev: Evaluation) -> None:
        """One line per evaluation: changes stand out, repeats are summarised."""
        label, n, status = self.monitor.label, self.monitor.evaluations, ev.result.status
        now = datetime.now(UTC)
        if status != previous:
            was = f"{previous} -> " if previous else ""
            after = f" after {self.repeats + 1} {previous} evaluation(s)" if previous else ""
            log.warning("gate %s evaluation %d: *** %s%s ***%s - %s", label, n, was, status.upper(), after,
                        ev.result.reason)
            self.repeats, self.status_since = 0, now
            return
        self.repeats += 1
        if self.repeats % SUMMARY_EVERY == 0:
            since = f" since {self.status_since:%H:%M:%S} UTC" if self.status_since else ""
            log.info("gate %s evaluation %d: still %s (%d unchanged evaluations%s) - %s", label, n, status,
                     self.repeats + 1, since, ev.result.reason)
        else:
            log.debug("gate %s evaluation %d: %s - %s", label, n, status, ev.result.reason)

    def expired(self) -> Payload:
        ev = self.last
        label = self.monitor.label if self.monitor else self.gate
        n = self.monitor.evaluations if self.monitor else 0
        last = f"last status {ev.result.status}: {ev.result.reason}" if ev else "never evaluated"
        return self._event("timeout", ev, reason=f"gate {label} did not pass by {self.deadline_text} "
                                                 f"after {n} evaluation(s); {last}")
