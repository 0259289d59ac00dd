"""One read-rollout step's hold, watched: check every interval, roll back within one.

The decision half of the deferrable hold (the loop is
``migration_engine.airflow.triggers.ReadRolloutHoldTrigger``, in the triggerer's event loop).

Why a trigger and not a rescheduled sensor: a step holds for hours (4 h / 4 h / 8 h / 24 h); each
rescheduled check would wait for a scheduler loop and a free worker slot - on a busy cluster that
is exactly the delay that must not sit between "the error rate broke the threshold" and "traffic
is back on the old tables".

The rollback itself (``read_new_pct = 0`` + ledger entries with the step and the figures) is done
**here, in the check that saw the breach**, not after the task resumes on a worker: the safe state
must not depend on worker availability. Setting a flag to 0 is idempotent, so a watch that runs
twice (triggerer failover) is harmless. The resumed task then alerts and fails the run.

Every check is recorded in ``gate_results`` (gate ``read_error_rate``, with the hold's counters).

A restarted trigger resumes from its serialized kwargs: same hold end, and its first interval
reaches back to the last snapshot it was given (a longer interval, still judged correctly); with
``hold_started`` (the hold's first start, kept across retries of the task) ``start`` also reads the
last recorded check back, so the counters - checks, passed checks, the inconclusive streak -
continue instead of starting from zero (a hold that ends needs at least one passed interval over
the *whole* hold, not since the last restart). If the hold ends while its last checks
fail, the trigger retries ``max_errors`` times an interval apart; still undecided (``expired``), it
fails closed: roll back.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from migration_engine import control, db, sqlfiles
from migration_engine.cutover.rollout import Decision, HoldMonitor
from migration_engine.gates import GateResult
from migration_engine.gates.error_rate import Snapshot, evaluate_delta, interval_counts, path_totals
from migration_engine.gates.read_latency import judge_latency
from migration_engine.watch import Payload

log = logging.getLogger(__name__)


class HoldWatch:
    def __init__(self, *, conn_id: str, schema: str, entities: list[str], pct: int, hold_until: str,
                 max_increase_points: float, min_requests: int, baseline_pct: float | None, max_inconclusive: int,
                 snapshot: dict[str, Any], dag_id: str | None = None, run_id: str | None = None,
                 task_id: str | None = None, max_errors: int = 3, hold_started: str | None = None,
                 max_p95_increase_pct: float | None = None, min_p95_increase_ms: float = 0.0,
                 baseline_p95_ms: float | None = None) -> None:
        self.conn_id, self.schema, self.entities = conn_id, schema, list(entities)
        self.pct, self.hold_until = int(pct), datetime.fromisoformat(hold_until)
        self.max_increase_points, self.min_requests = float(max_increase_points), int(min_requests)
        self.baseline_pct, self.max_inconclusive, self.max_errors = baseline_pct, int(max_inconclusive), int(max_errors)
        self.snapshot = dict(snapshot)
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.monitor = HoldMonitor(self.pct, self.hold_until, self.max_inconclusive)
        self.previous = Snapshot.from_dict(self.snapshot)
        self.hold_started = hold_started
        self.max_p95_increase_pct = None if max_p95_increase_pct is None else float(max_p95_increase_pct)
        self.min_p95_increase_ms = float(min_p95_increase_ms or 0.0)
        self.baseline_p95_ms = None if baseline_p95_ms is None else float(baseline_p95_ms)
        self.resumed_from: dict[str, Any] | None = None

    @property
    def actor(self) -> str:
        return f"airflow:{self.dag_id or 'read_rollout'}"

    def _connect(self):
        return db.connect(self.conn_id, application_name="migration-read-rollout")

    # -- the watch protocol ----------------------------------------------------------------------
    def start(self) -> Payload | None:
        """Resume the counters from the hold's last recorded check (best effort: a fresh count is safe)."""
        if not self.hold_started:
            return None
        try:
            conn = self._connect()
        except Exception as exc:  # noqa: BLE001 - the first check will count the error
            log.warning("read rollout %s%%: cannot read the last check back: %s", self.pct, exc)
            return None
        try:
            with conn.cursor() as cur:
                sqlfiles.run(cur, "cutover/hold_last_check.sql", {"schema": self.schema},
                             {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id,
                              "step_pct": str(self.pct), "since": self.hold_started})
                row = cur.fetchone()
            conn.rollback()
        except Exception as exc:  # noqa: BLE001
            log.warning("read rollout %s%%: cannot read the last check back: %s", self.pct, exc)
            return None
        finally:
            conn.close()
        if row is not None:
            figures, at = row
            m = self.monitor
            m.checks = int(figures.get("checks") or 0)
            m.passed_checks = int(figures.get("passed_checks") or 0)
            m.inconclusive_streak = int(figures.get("inconclusive_streak") or 0)
            self.resumed_from = {"checks": m.checks, "passed_checks": m.passed_checks,
                                 "inconclusive_streak": m.inconclusive_streak, "at": at.isoformat()}
            log.info("read rollout %s%%: resuming the hold from its last check at %s: %s", self.pct,
                     at.isoformat(timespec="seconds"), self.resumed_from)
        return None

    def poll(self) -> Payload | None:
        decision = self.check()
        return self._final(decision) if decision.final else None

    def expired(self) -> Payload:
        last = self.monitor.last.reason if self.monitor.last else "no check completed"
        reason = (f"{self.pct}% step: the hold ended at {self.hold_until.isoformat(timespec='seconds')} but its "
                  f"last checks could not be judged ({last}); rolling back (fail closed)")
        return self._final(Decision("error", reason, {"step_pct": self.pct, "checks": self.monitor.checks,
                                                      "errors_streak": self.monitor.errors_streak}))

    # -- the work ------------------------------------------------------------------------------
    def _final(self, decision: Decision) -> Payload:
        payload: Payload = {"status": decision.kind, "reason": decision.reason, "figures": decision.figures,
                            "pct": self.pct, "checks": self.monitor.checks}
        if decision.rollback:
            payload.update(self.roll_back(decision))
        return payload

    def check(self) -> Decision:
        """One interval: snapshot, judge, record; remembers the snapshot to compare next time."""
        now = datetime.now(UTC)
        monitor, previous = self.monitor, self.previous
        try:
            conn = self._connect()
        except Exception as exc:  # noqa: BLE001 - an unreachable database is a failed check
            return monitor.observe_error(str(exc).strip(), now=now, max_errors=self.max_errors)
        try:
            totals = path_totals(conn, self.schema, self.entities, previous.since)
            conn.rollback()
            current = Snapshot(at=now, since=previous.since, old=totals["old"], new=totals["new"])
            result = evaluate_delta(previous, current, baseline_pct=self.baseline_pct,
                                    max_increase_points=self.max_increase_points, min_requests=self.min_requests)
            result = self._with_latency(result, previous, current)
            flag_pct = int(control.current_flags(conn, self.schema)["read_new_pct"])
            decision = monitor.observe(result, now=now, flag_pct=flag_pct)
            try:
                control.record_gate_result(
                    conn, self.schema, gate=result.gate, status=result.status,
                    figures={**decision.figures, "decision": decision.kind, "task_id": self.task_id},
                    reason=result.reason, dag_id=self.dag_id, run_id=self.run_id)
            except Exception as exc:  # noqa: BLE001 - the decision stands without its record
                log.error("could not record the check in gate_results: %s", exc)
            latency = result.figures.get("latency_status")
            log.info("read rollout %s%%: %s - %s%s", self.pct, decision.kind, result.reason,
                     f"; latency {latency}: new p95 {result.figures.get('latency_new_p95_ms')} ms vs "
                     f"{result.figures.get('latency_old_p95_ms')} ms" if latency else "")
            self.previous = current
            return decision
        except Exception as exc:  # noqa: BLE001
            try:
                conn.rollback()
            except Exception:  # noqa: BLE001
                pass
            return monitor.observe_error(f"{type(exc).__name__}: {str(exc).strip()}", now=now,
                                         max_errors=self.max_errors)
        finally:
            conn.close()

    def _with_latency(self, result: GateResult, previous: Snapshot, current: Snapshot) -> GateResult:
        """The interval's error-rate result, made critical if new-path reads got too slow.

        The interval's latency distribution is the difference of the two snapshots' histograms
        (exact for the interval, whatever its length; one slow outlier among many requests does not
        move the p95)."""
        if self.max_p95_increase_pct is None or result.status == "critical":
            return result
        new, old = interval_counts(previous, current)
        if old.timed >= self.min_requests and old.p95_ms is not None:
            old_p95, old_n, label = old.p95_ms, old.timed, "old path in the same interval"
        else:
            old_p95, old_n, label = self.baseline_p95_ms, self.min_requests, "pre-rollout old-path baseline"
        latency = judge_latency(new.p95_ms, old_p95, max_increase_pct=self.max_p95_increase_pct,
                                span=result.figures.get("interval", "the interval"), new_samples=new.timed,
                                old_samples=old_n if old_p95 is not None else 0, min_samples=self.min_requests,
                                min_increase_ms=self.min_p95_increase_ms, old_label=label,
                                new_p95_floor=new.p95_floor_ms)
        figures = {**result.figures, **{f"latency_{k}": v for k, v in latency.figures.items()},
                   "latency_status": latency.status}
        if latency.status == "critical":
            return GateResult(result.gate, "critical", f"latency degradation: {latency.reason}", figures)
        return GateResult(result.gate, result.status, result.reason, figures)

    def roll_back(self, decision: Decision) -> dict[str, Any]:
        """read_new_pct = 0 and the reason in the ledger; never raises (the event reports failure)."""
        context = {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id, "step_pct": self.pct}
        reason = f"automatic read-rollout rollback: {decision.reason}"
        try:
            conn = self._connect()
        except Exception as exc:  # noqa: BLE001
            return {"rolled_back": False, "rollback_error": f"cannot connect: {str(exc).strip()}"}
        try:
            change = control.ensure_flag(conn, self.schema, "read_new_pct", 0, actor=self.actor, reason=reason,
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
