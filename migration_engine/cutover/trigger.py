"""The deferrable hold of one read-rollout step: check every interval, roll back within one.

Why a trigger: a step holds for hours (4 h / 4 h / 8 h / 24 h). A sensor in ``reschedule`` mode
would also free the worker between checks, but each check would wait for a scheduler loop and a
free worker slot - on a busy cluster that is exactly the delay that must not sit between "the error
rate broke the threshold" and "traffic is back on the old tables". The trigger runs in the
triggerer's event loop, sleeps ``interval`` between checks and does the database work in a thread.

The rollback itself (``read_new_pct = 0`` + ledger entries with the step and the figures) is done
**here, by the trigger, in the check that saw the breach**, not after the task resumes on a worker:
the safe state must not depend on worker availability. Setting a flag to 0 is idempotent, so a
trigger that runs twice (triggerer failover) is harmless. The resumed task then alerts and fails
the run with the reason.

Every check is recorded in ``gate_results`` (gate ``read_error_rate``). A restarted trigger
resumes from its serialized kwargs: same deadline, and its first interval reaches back to the last
snapshot it was given (a longer interval, still judged correctly).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)

CLASSPATH = "migration_engine.cutover.trigger.ReadRolloutHoldTrigger"


class ReadRolloutHoldTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        conn_id: str,
        schema: str,
        entities: list[str],
        pct: int,
        hold_until: str,
        interval_s: float,
        max_increase_points: float,
        min_requests: int,
        baseline_pct: float | None,
        max_inconclusive: int,
        snapshot: dict[str, Any],
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        max_errors: int = 3,
    ) -> None:
        super().__init__()
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.conn_id, self.schema, self.entities = conn_id, schema, list(entities)
        self.pct, self.hold_until, self.interval_s = int(pct), hold_until, float(interval_s)
        self.max_increase_points, self.min_requests = float(max_increase_points), int(min_requests)
        self.baseline_pct = baseline_pct
        self.max_inconclusive, self.max_errors = int(max_inconclusive), int(max_errors)
        self.snapshot = dict(snapshot)
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {
            "conn_id": self.conn_id, "schema": self.schema, "entities": self.entities, "pct": self.pct,
            "hold_until": self.hold_until, "interval_s": self.interval_s,
            "max_increase_points": self.max_increase_points, "min_requests": self.min_requests,
            "baseline_pct": self.baseline_pct, "max_inconclusive": self.max_inconclusive,
            "snapshot": self.snapshot, "dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id,
            "max_errors": self.max_errors,
        }

    @property
    def actor(self) -> str:
        return f"airflow:{self.dag_id or 'read_rollout'}"

    # -- synchronous work, run in a thread ------------------------------------------------------
    def _connect(self):
        from migration_engine import db

        return db.connect(self.conn_id, application_name="migration-read-rollout")

    def _check(self, monitor, previous):
        """One interval: snapshot, judge, record; returns (decision, snapshot to compare next time)."""
        from migration_engine import control
        from migration_engine.control import current_flags
        from migration_engine.gates.error_rate import Snapshot, evaluate_delta, path_totals

        now = datetime.now(UTC)
        try:
            conn = self._connect()
        except Exception as exc:  # noqa: BLE001 - an unreachable database is a failed check
            return monitor.observe_error(str(exc).strip(), now=now, max_errors=self.max_errors), previous
        try:
            totals = path_totals(conn, self.schema, self.entities, previous.since)
            conn.rollback()
            current = Snapshot(at=now, since=previous.since, old=totals["old"], new=totals["new"])
            result = evaluate_delta(previous, current, baseline_pct=self.baseline_pct,
                                    max_increase_points=self.max_increase_points, min_requests=self.min_requests)
            flag_pct = int(current_flags(conn, self.schema)["read_new_pct"])
            decision = monitor.observe(result, now=now, flag_pct=flag_pct)
            try:
                control.record_gate_result(
                    conn, self.schema, gate=result.gate, status=result.status,
                    figures={**decision.figures, "decision": decision.kind, "task_id": self.task_id},
                    reason=result.reason, dag_id=self.dag_id, run_id=self.run_id)
            except Exception as exc:  # noqa: BLE001 - the decision stands without its record
                log.error("could not record the check in gate_results: %s", exc)
            log.info("read rollout %s%%: %s - %s", self.pct, decision.kind, result.reason)
            return decision, current
        except Exception as exc:  # noqa: BLE001
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001
                pass
            return monitor.observe_error(f"{type(exc).__name__}: {str(exc).strip()}", now=now,
                                         max_errors=self.max_errors), previous
        finally:
            conn.close()

    def _roll_back(self, decision) -> dict[str, Any]:
        """read_new_pct = 0 and the reason in the ledger; never raises (the event reports failure)."""
        from migration_engine import control
        from migration_engine.control import ensure_flag

        context = {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id, "step_pct": self.pct}
        reason = f"automatic read-rollout rollback: {decision.reason}"
        try:
            conn = self._connect()
        except Exception as exc:  # noqa: BLE001
            return {"rolled_back": False, "rollback_error": f"cannot connect: {str(exc).strip()}"}
        try:
            change = ensure_flag(conn, self.schema, "read_new_pct", 0, actor=self.actor, reason=reason,
                                 context={**context, "figures": decision.figures})
            at = datetime.now(UTC)
            control.audit(conn, self.schema, actor=self.actor, action="read_rollout.rolled_back",
                          target=f"read_new_pct={self.pct}",
                          details={**context, "decision": decision.kind, "figures": decision.figures,
                                   "flag_audit_id": change.audit_id if change else None,
                                   "rolled_back_at": at.isoformat()},
                          reason=reason)
            return {"rolled_back": True, "rolled_back_at": at.isoformat(),
                    "flag_was": change.old_value if change else 0}
        except Exception as exc:  # noqa: BLE001
            log.exception("automatic rollback of read_new_pct failed")
            return {"rolled_back": False, "rollback_error": f"{type(exc).__name__}: {str(exc).strip()}"}
        finally:
            conn.close()

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        from migration_engine.cutover.rollout import HoldMonitor
        from migration_engine.gates.error_rate import Snapshot

        hold_until = datetime.fromisoformat(self.hold_until)
        previous = Snapshot.from_dict(self.snapshot)
        monitor = HoldMonitor(self.pct, hold_until, self.max_inconclusive)
        while True:
            remaining = (hold_until - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(0.0, min(self.interval_s, remaining)))
            decision, previous = await asyncio.to_thread(self._check, monitor, previous)
            if not decision.final:
                continue
            payload: dict[str, Any] = {"status": decision.kind, "reason": decision.reason,
                                       "figures": decision.figures, "pct": self.pct, "checks": monitor.checks}
            if decision.rollback:
                payload.update(await asyncio.to_thread(self._roll_back, decision))
            yield TriggerEvent(payload)
            return
