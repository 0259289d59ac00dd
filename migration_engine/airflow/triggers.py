"""The one polling loop of every deferred wait: gates, read-rollout holds, the recovery watch.

Runs in Airflow's triggerer (one asyncio loop shared by thousands of triggers), so every poll -
synchronous psycopg2 work, a Slack page, an automatic rollback - runs in a thread
(``asyncio.to_thread``) and the loop only ever awaits. While it waits the task instance is
``deferred``: no worker slot, no pool slot, for hours or days.

:class:`PollingTrigger` owns the loop: optional first delay, poll, sleep ``poll_interval`` (the last
sleep is cut so one poll lands exactly at the deadline), fire the first payload a poll returns.
After the deadline it polls at most ``overrun_polls`` more times, an interval apart, then fires the
watch's ``expired()`` payload - so every wait is bounded. What is polled and decided lives in the
engine (``migration_engine.watch.Watch``: ``GateWatch``, ``HoldWatch``, ``RecoveryWatch``); the
subclasses here only carry their JSON-able kwargs (what the triggerer re-creates them from) and
build the watch. The classpath is this installed module, importable by the triggerer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from migration_engine.watch import Watch


def _utc(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class PollingTrigger(BaseTrigger):
    """Poll a watch in a thread every ``poll_interval`` seconds until it fires or the deadline passes."""

    overrun_polls = 0  # polls allowed after the deadline before ``expired()`` fires

    def __init__(self, *, poll_interval: float, deadline: str | None = None) -> None:
        super().__init__()
        if not poll_interval or float(poll_interval) <= 0:
            raise ValueError(f"poll interval must be positive, got {poll_interval!r}")
        self.poll_interval = float(poll_interval)
        self.deadline_at = _utc(deadline)

    # -- what a subclass provides ---------------------------------------------------------------
    def serialize_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def build_watch(self) -> Watch:
        raise NotImplementedError

    def first_delay(self) -> float:
        """Seconds to wait before the first poll (default: poll at once)."""
        return 0.0

    # -- the loop ----------------------------------------------------------------------------------
    def serialize(self) -> tuple[str, dict[str, Any]]:
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}", self.serialize_kwargs()

    def _remaining(self) -> float | None:
        if self.deadline_at is None:
            return None
        return (self.deadline_at - datetime.now(UTC)).total_seconds()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        watch = await asyncio.to_thread(self.build_watch)
        payload = await asyncio.to_thread(watch.start)
        if payload is not None:
            yield TriggerEvent(payload)
            return
        delay = self.first_delay()
        if delay > 0:
            await asyncio.sleep(delay)
        overrun = 0
        while True:
            payload = await asyncio.to_thread(watch.poll)
            if payload is not None:
                yield TriggerEvent(payload)
                return
            remaining = self._remaining()
            if remaining is not None and remaining <= 0:
                if overrun >= self.overrun_polls:
                    yield TriggerEvent(await asyncio.to_thread(watch.expired))
                    return
                overrun += 1
                pause = self.poll_interval
            else:
                pause = self.poll_interval if remaining is None else min(self.poll_interval, remaining)
            await asyncio.sleep(pause)


class GateTrigger(PollingTrigger):
    """A gate (``migration_engine.gates.watch.GateWatch``), evaluated every ``poke_interval``."""

    def __init__(self, gate: str, gate_params: dict[str, Any] | None = None, *, label: str | None = None,
                 poke_interval: float = 60.0, deadline: str | None = None,
                 fail_on: list[str] | tuple[str, ...] = ("critical",), dag_id: str | None = None,
                 run_id: str | None = None, task_id: str | None = None, alert: bool = True,
                 max_consecutive_errors: int = 5) -> None:
        super().__init__(poll_interval=poke_interval, deadline=deadline)
        self.gate, self.gate_params, self.label = gate, dict(gate_params or {}), label
        self.poke_interval, self.deadline = self.poll_interval, deadline
        self.fail_on = list(fail_on)
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.alert, self.max_consecutive_errors = alert, int(max_consecutive_errors)

    def serialize_kwargs(self) -> dict[str, Any]:
        return {"gate": self.gate, "gate_params": self.gate_params, "label": self.label,
                "poke_interval": self.poke_interval, "deadline": self.deadline, "fail_on": self.fail_on,
                "dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id, "alert": self.alert,
                "max_consecutive_errors": self.max_consecutive_errors}

    def build_watch(self) -> Watch:
        from migration_engine.gates.watch import GateWatch

        return GateWatch(self.gate, self.gate_params, label=self.label, fail_on=self.fail_on, dag_id=self.dag_id,
                         run_id=self.run_id, task_id=self.task_id, alert=self.alert,
                         max_consecutive_errors=self.max_consecutive_errors,
                         deadline_text=self.deadline_at.isoformat(timespec="seconds") if self.deadline_at else None)


class ReadRolloutHoldTrigger(PollingTrigger):
    """One read-rollout step's hold (``migration_engine.cutover.hold_watch.HoldWatch``): the automatic
    rollback happens inside the trigger, in the check that saw the breach."""

    def __init__(self, *, conn_id: str, schema: str, entities: list[str], pct: int, hold_until: str,
                 interval_s: float, max_increase_points: float, min_requests: int, baseline_pct: float | None,
                 max_inconclusive: int, snapshot: dict[str, Any], dag_id: str | None = None,
                 run_id: str | None = None, task_id: str | None = None, max_errors: int = 3,
                 hold_started: str | None = None, max_p95_increase_pct: float | None = None,
                 min_p95_increase_ms: float = 0.0, baseline_p95_ms: float | None = None) -> None:
        super().__init__(poll_interval=interval_s, deadline=hold_until)
        self.kwargs = {
            "conn_id": conn_id, "schema": schema, "entities": list(entities), "pct": int(pct),
            "hold_until": hold_until, "interval_s": float(interval_s),
            "max_increase_points": float(max_increase_points), "min_requests": int(min_requests),
            "baseline_pct": baseline_pct, "max_inconclusive": int(max_inconclusive), "snapshot": dict(snapshot),
            "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "max_errors": int(max_errors),
            "hold_started": hold_started, "max_p95_increase_pct": max_p95_increase_pct,
            "min_p95_increase_ms": float(min_p95_increase_ms or 0.0), "baseline_p95_ms": baseline_p95_ms}
        # the hold's end is judged by the watch; a check that errored at the end is retried this often
        self.overrun_polls = int(max_errors)

    def serialize_kwargs(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def first_delay(self) -> float:  # the first check judges the first interval of the hold
        return max(0.0, min(self.poll_interval, self._remaining() or 0.0))

    def build_watch(self) -> Watch:
        from migration_engine.cutover.hold_watch import HoldWatch

        return HoldWatch(**{k: v for k, v in self.kwargs.items() if k != "interval_s"})


class RecoveryTrigger(PollingTrigger):
    """After rollback scenario 1 or 2 (``migration_engine.rollback.recovery_watch.RecoveryWatch``):
    wait the flag's propagation time, then judge every interval until recovered or the deadline."""

    def __init__(self, *, conn_id: str, schema: str, entities: list[str], mode: str, deadline: str,
                 interval_s: float, propagation_s: float, baseline_pct: float | None, max_increase_points: float,
                 min_requests: int, dag_id: str | None = None, run_id: str | None = None,
                 task_id: str | None = None) -> None:
        super().__init__(poll_interval=interval_s, deadline=deadline)
        self.kwargs = {
            "conn_id": conn_id, "schema": schema, "entities": list(entities), "mode": mode, "deadline": deadline,
            "interval_s": float(interval_s), "propagation_s": float(propagation_s), "baseline_pct": baseline_pct,
            "max_increase_points": float(max_increase_points), "min_requests": int(min_requests),
            "dag_id": dag_id, "run_id": run_id, "task_id": task_id}

    def serialize_kwargs(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def first_delay(self) -> float:
        return self.kwargs["propagation_s"]

    def build_watch(self) -> Watch:
        from migration_engine.rollback.recovery_watch import RecoveryWatch

        skip = ("deadline", "interval_s", "propagation_s")
        return RecoveryWatch(**{k: v for k, v in self.kwargs.items() if k not in skip})
