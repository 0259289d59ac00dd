"""The one shape every migration step has (like a pgroll operation), and the runner that records it.

A step knows four things:

* ``apply(ex)``  - make the change; idempotent: it reads the catalog and skips what is already done,
  so re-running after a failure at any point finishes the job and re-running after success sends
  nothing;
* ``plan(conn)`` - the exact SQL ``apply`` would send now (``apply`` run on a planning executor,
  which records instead of executing; catalog reads still happen), for dry runs;
* ``verify(conn)`` - raise :class:`VerificationError` saying exactly what is missing;
* ``revert(ex, before)`` - put back the catalog state captured before the first apply
  (``before_state``), so a rollback never drops something the step did not create.

:class:`StepRunner` wraps steps with run state in ``<control schema>.step_state`` (status
pending/applied/verified/reverted/failed, the SQL last sent, details merged over time) and an
audit-ledger entry per action. Later phases (archive/drop, rollbacks) reuse both.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import extensions

from migration_engine import control, sqlfiles
from migration_engine.config import Ddl
from migration_engine.ddl import DdlExecutor
from migration_engine.errors import Refused, VerificationError

log = logging.getLogger(__name__)


class RevertRefused(Refused):
    """A revert would lose something (or has nothing recorded to revert to)."""


@dataclass
class StepResult:
    step_id: str
    action: str                       # apply | revert | verify | plan
    executed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether any statement besides the session settings was (or would be) sent."""
        return any(not s.lstrip().upper().startswith("SELECT SET_CONFIG") for s in self.executed)

    def as_dict(self) -> dict[str, Any]:
        return {"step_id": self.step_id, "action": self.action, "executed": self.executed,
                "notes": self.notes, "details": self.details, "changed": self.changed}


class Step(ABC):
    """One idempotent, verifiable, revertible change."""

    step_id: str
    phase: str
    title: str
    #: ``False`` for telemetry steps (the performance sample, every 5 min): a successful apply is not
    #: an audited change (its state is its own table), so it does not crowd the ledger; a failure of
    #: the step is still audited (``step.failed``).
    audited: bool = True

    @abstractmethod
    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        """The catalog facts ``revert`` needs to restore exactly what was there before."""

    @abstractmethod
    def apply(self, ex: DdlExecutor) -> list[str]:
        """Make the change through ``ex`` (skipping done parts); returns human notes."""

    @abstractmethod
    def problems(self, ex: DdlExecutor) -> list[str]:
        """Everything that is not as the step promises (empty = verified)."""

    def report(self, ex: DdlExecutor) -> dict[str, Any]:
        """Facts about the applied result worth returning to the caller (XCom), read from the database
        after apply (so a re-run that sent nothing reports the same facts). Default: nothing."""
        return {}

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        """Restore ``before`` through ``ex``; returns human notes. Steps without one refuse."""
        raise RevertRefused(f"{self.step_id} ({self.title}) has no automatic revert")

    def revert_problems(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        """Differences between the catalog now and ``before`` (empty = fully reverted)."""
        now = self.before_state(ex)
        return [f"{k}: expected {before.get(k)!r}, found {now.get(k)!r}"
                for k in sorted(set(now) | set(before)) if now.get(k) != before.get(k)]

    # The signatures other code uses; they build the executor around a connection.
    def plan(self, conn, ddl: Ddl) -> list[str]:
        ex = DdlExecutor(conn, ddl, planning=True)
        self.apply(ex)
        return ex.recorded

    def verify(self, conn, ddl: Ddl) -> None:
        problems = self.problems(DdlExecutor(conn, ddl, planning=True))
        if problems:
            raise VerificationError(problems, step_id=self.step_id)


# --- run state -----------------------------------------------------------------------------
def get_state(conn, schema: str, step_id: str) -> dict[str, Any] | None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "steps/state_get.sql", {"schema": schema}, {"step_id": step_id})
        row = cur.fetchone()
    if row is None:
        return None
    keys = ("step_id", "phase", "status", "last_sql", "details", "updated_at")
    return dict(zip(keys, row, strict=True))


def list_states(conn, schema: str, phase: str) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "steps/state_list.sql", {"schema": schema}, {"phase": phase})
        keys = ("step_id", "phase", "status", "last_sql", "details", "updated_at")
        return [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]


def put_state(conn, schema: str, *, step_id: str, phase: str, status: str, last_sql: str = "",
              details: dict | None = None) -> None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "steps/state_put.sql", {"schema": schema}, {
            "step_id": step_id, "phase": phase, "status": status, "last_sql": last_sql,
            "details": json.dumps(details or {}, default=str)})
    if not conn.autocommit:
        conn.commit()


def _sql_text(statements: Sequence[str]) -> str:
    return ";\n".join(s.rstrip().rstrip(";") for s in statements) + (";" if statements else "")


def summarize_plan(statements: Sequence[str], *, keep: int = 3) -> list[str]:
    """Shorten long runs of same-shaped statements (backfill batches) for logs and XCom."""
    out: list[str] = []
    i = 0
    while i < len(statements):
        head = statements[i].split("WHERE", 1)[0]
        j = i
        while j + 1 < len(statements) and statements[j + 1].split("WHERE", 1)[0] == head:
            j += 1
        run = statements[i:j + 1]
        if len(run) > 2 * keep:
            out += run[:keep] + [f"-- ... {len(run) - 2 * keep} more statements of the same shape ..."] + run[-keep:]
        else:
            out += run
        i = j + 1
    return out


# --- the runner ----------------------------------------------------------------------------
class StepRunner:
    """Applies, verifies, plans and reverts steps on one connection, recording every action.

    The connection is switched to autocommit (DDL runs one statement per transaction); control-state
    writes therefore commit on their own. ``actor`` goes into the audit ledger (e.g.
    ``airflow:migration_phase1_schema_prep``); ``context`` (dag/run ids) into every entry.
    """

    def __init__(self, conn, *, schema: str, ddl: Ddl, actor: str, context: dict | None = None,
                 connect: Callable[[], Any] | None = None):
        if conn.info.transaction_status != extensions.TRANSACTION_STATUS_IDLE:
            conn.rollback()
        conn.autocommit = True
        self.conn = conn
        self.schema = schema
        self.ddl = ddl
        self.actor = actor
        self.context = dict(context or {})
        self.connect = connect

    def executor(self, *, planning: bool = False) -> DdlExecutor:
        ex = DdlExecutor(self.conn, self.ddl, planning=planning, connect=self.connect)
        ex.actor, ex.context = self.actor, dict(self.context)
        return ex

    def _audit(self, action: str, step: Step, details: dict, reason: str = "") -> None:
        control.audit(self.conn, self.schema, actor=self.actor, action=action, target=step.step_id,
                      details={**self.context, **details}, reason=reason or step.title)

    # -- plan ---------------------------------------------------------------------------------
    def plan(self, steps: Sequence[Step]) -> list[StepResult]:
        """What ``apply`` would send now, per step; changes nothing (no state, no audit)."""
        results = []
        for step in steps:
            ex = self.executor(planning=True)
            notes = step.apply(ex)
            results.append(StepResult(step.step_id, "plan", ex.recorded, notes))
        return results

    def revert_plan(self, steps: Sequence[Step]) -> list[StepResult]:
        results = []
        for step in steps:
            before = self._recorded_before(step)
            if before is None:
                results.append(StepResult(step.step_id, "plan", [], ["nothing recorded: never applied here"]))
                continue
            ex = self.executor(planning=True)
            notes = step.revert(ex, before)
            results.append(StepResult(step.step_id, "plan", ex.recorded, notes, {"before": before}))
        return results

    # -- apply --------------------------------------------------------------------------------
    def _recorded_before(self, step: Step) -> dict | None:
        state = get_state(self.conn, self.schema, step.step_id)
        if state is None or state["status"] == "reverted":
            return None
        return state["details"].get("before")

    def apply(self, steps: Sequence[Step]) -> list[StepResult]:
        results = []
        for step in steps:
            ex = self.executor()
            state = get_state(self.conn, self.schema, step.step_id)
            details: dict[str, Any] = {}
            if state is None or state["status"] == "reverted" or "before" not in state["details"]:
                details["before"] = step.before_state(ex)  # first apply (or after a rollback)
                put_state(self.conn, self.schema, step_id=step.step_id, phase=step.phase, status="pending",
                          details={**details, "error": None})
            try:
                notes = step.apply(ex)
            except Exception as exc:
                put_state(self.conn, self.schema, step_id=step.step_id, phase=step.phase, status="failed",
                          last_sql=_sql_text(ex.recorded),
                          details={"error": f"{type(exc).__name__}: {exc}", "lock_retries": ex.lock_retries})
                self._audit("step.failed", step, {"error": str(exc), "executed": ex.recorded,
                                                  "lock_retries": ex.lock_retries})
                raise
            result = StepResult(step.step_id, "apply", ex.recorded, notes, {
                "lock_retries": ex.lock_retries, "invalid_indexes_rebuilt": ex.invalid_indexes_rebuilt,
                **step.report(self.executor(planning=True))})
            put_state(self.conn, self.schema, step_id=step.step_id, phase=step.phase, status="applied",
                      last_sql=_sql_text(ex.recorded) if result.changed else "",
                      details={**result.details, "error": None, "changed": result.changed})
            if result.changed:
                if step.audited:
                    self._audit("step.apply", step, {"executed": summarize_plan(ex.recorded), "notes": notes,
                                                     **result.details})
                log.info("%s: applied (%d statements, %d lock-timeout retries)", step.step_id,
                         len(ex.recorded), ex.lock_retries)
            else:
                log.info("%s: already in place, nothing sent (%s)", step.step_id, "; ".join(notes))
            results.append(result)
        return results

    # -- verify -------------------------------------------------------------------------------
    def verify(self, steps: Sequence[Step]) -> list[StepResult]:
        """Check every step; raise one VerificationError listing every problem of every step."""
        failures: list[str] = []
        results = []
        for step in steps:
            problems = step.problems(self.executor(planning=True))
            if problems:
                failures += [f"{step.step_id}: {p}" for p in problems]
                put_state(self.conn, self.schema, step_id=step.step_id, phase=step.phase, status="failed",
                          details={"verify_problems": problems})
            else:
                put_state(self.conn, self.schema, step_id=step.step_id, phase=step.phase, status="verified",
                          details={"verify_problems": []})
            results.append(StepResult(step.step_id, "verify", notes=problems or ["verified"]))
        if failures:
            control.audit(self.conn, self.schema, actor=self.actor, action="step.verify_failed",
                          target=steps[0].phase if steps else "", details={**self.context, "problems": failures})
            raise VerificationError(failures)
        return results

    # -- revert -------------------------------------------------------------------------------
    def revert(self, steps: Sequence[Step]) -> list[StepResult]:
        """Revert steps in the order given (callers pass them last-applied first)."""
        results = []
        for step in steps:
            state = get_state(self.conn, self.schema, step.step_id)
            if state is None or "before" not in state["details"]:
                log.warning("%s: no recorded apply, nothing to revert", step.step_id)
                results.append(StepResult(step.step_id, "revert", notes=["never applied here: skipped"]))
                continue
            if state["status"] == "reverted":
                results.append(StepResult(step.step_id, "revert", notes=["already reverted"]))
                continue
            before = state["details"]["before"]
            ex = self.executor()
            try:
                notes = step.revert(ex, before)
                leftover = step.revert_problems(self.executor(planning=True), before)
                if leftover:
                    raise VerificationError(leftover, step_id=step.step_id)
            except Exception as exc:
                put_state(self.conn, self.schema, step_id=step.step_id, phase=step.phase, status="failed",
                          last_sql=_sql_text(ex.recorded), details={"error": f"revert: {type(exc).__name__}: {exc}"})
                self._audit("step.revert_failed", step, {"error": str(exc), "executed": ex.recorded})
                raise
            put_state(self.conn, self.schema, step_id=step.step_id, phase=step.phase, status="reverted",
                      last_sql=_sql_text(ex.recorded), details={"lock_retries": ex.lock_retries, "error": None})
            self._audit("step.revert", step, {"executed": ex.recorded, "notes": notes, "before": before})
            results.append(StepResult(step.step_id, "revert", ex.recorded, notes, {"lock_retries": ex.lock_retries}))
        return results
