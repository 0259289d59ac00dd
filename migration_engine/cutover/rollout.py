"""The read rollout (seed 5.2) as data and decisions, without Airflow or a database.

``rollout_plan`` turns ``cutover.rollout`` into steps (10 % for 4 h, 25 % for 4 h, 50 % for 8 h,
100 % for 24 h by default; holds are scaled by ``time_scale``). During a step's hold a
:class:`HoldMonitor` is fed one error-rate evaluation per check interval and decides:

* ``breach``     - the new-path error rate rose more than the allowed points: roll back now;
* ``no_data``    - ``cutover.max_inconclusive_checks`` intervals in a row without enough new-path
                   reads (fail closed, like Argo Rollouts' consecutive error limit): roll back;
* ``flag_changed`` - ``read_new_pct`` is no longer this step's value: someone (a rollback DAG, an
                   operator) took over; stop without touching the flag;
* ``error``      - the check itself failed several times in a row (database unreachable): we
                   cannot see, so we roll back;
* ``passed``     - the hold is over, no breach, and at least one interval had enough data;
* ``continue``   - keep watching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from migration_engine.config import MigrationConfig
from migration_engine.gates import GateResult
from migration_engine.gates.window import fmt_duration

FINAL = ("passed", "breach", "no_data", "flag_changed", "error")


@dataclass(frozen=True)
class StepPlan:
    index: int
    pct: int
    hold: timedelta

    @property
    def task_id(self) -> str:
        return f"read_rollout_{self.pct}pct"

    @property
    def label(self) -> str:
        return f"step {self.index + 1} ({self.pct}% of reads from the new tables, hold {fmt_duration(self.hold)})"


def rollout_plan(cfg: MigrationConfig) -> list[StepPlan]:
    return [StepPlan(i, s.pct, s.hold) for i, s in enumerate(cfg.cutover.rollout)]


def step_for(cfg: MigrationConfig, pct: int) -> StepPlan:
    for step in rollout_plan(cfg):
        if step.pct == pct:
            return step
    raise ValueError(f"read rollout step {pct}% is not in cutover.rollout "
                     f"({[s.pct for s in rollout_plan(cfg)]}); the config changed since the DAG was parsed")


@dataclass(frozen=True)
class Decision:
    kind: str  # continue | passed | breach | no_data | flag_changed | error
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.kind in FINAL

    @property
    def rollback(self) -> bool:
        """Whether read_new_pct must go back to 0 now."""
        return self.kind in ("breach", "no_data", "error")


@dataclass
class HoldMonitor:
    """State of one step's hold between check intervals."""

    pct: int
    hold_until: datetime
    max_inconclusive: int
    checks: int = 0
    passed_checks: int = 0
    inconclusive_streak: int = 0
    errors_streak: int = 0
    last: GateResult | None = None

    def _figures(self, result: GateResult | None) -> dict[str, Any]:
        return {**(result.figures if result else {}), "step_pct": self.pct, "checks": self.checks,
                "passed_checks": self.passed_checks, "inconclusive_streak": self.inconclusive_streak}

    def observe(self, result: GateResult, *, now: datetime, flag_pct: int) -> Decision:
        """Feed one interval's evaluation and the current ``read_new_pct``."""
        self.checks += 1
        self.errors_streak = 0
        self.last = result
        step = f"{self.pct}% step"
        if flag_pct != self.pct:
            return Decision("flag_changed", f"read_new_pct was changed to {flag_pct} outside this rollout during "
                            f"the {step}; stopping the hold (the flag is left as it is)", self._figures(result))
        if result.status == "critical":
            return Decision("breach", f"{step}: {result.reason}", self._figures(result))
        if result.status == "passed":
            self.passed_checks += 1
            self.inconclusive_streak = 0
        else:
            self.inconclusive_streak += 1
            if self.inconclusive_streak >= self.max_inconclusive:
                return Decision("no_data", (
                    f"{step}: {self.inconclusive_streak} check intervals in a row could not be judged "
                    f"(last: {result.reason}); no data is not success"), self._figures(result))
        if now >= self.hold_until:
            if self.passed_checks == 0:
                return Decision("no_data", f"{step}: the hold ended without a single interval with enough "
                                f"new-path reads to judge (last: {result.reason}); no data is not success",
                                self._figures(result))
            return Decision("passed", f"{step} held for its whole window: {self.passed_checks} of {self.checks} "
                            f"intervals judged, none above the allowed increase (last: {result.reason})",
                            self._figures(result))
        return Decision("continue", result.reason, self._figures(result))

    def observe_error(self, error: str, *, now: datetime, max_errors: int) -> Decision:
        """The check itself failed (database unreachable...): fail closed after ``max_errors`` in a row."""
        self.checks += 1
        self.errors_streak += 1
        figures = {**self._figures(self.last), "error": error, "errors_streak": self.errors_streak}
        if self.errors_streak >= max_errors:
            return Decision("error", f"{self.pct}% step: the error rate could not be checked "
                            f"{self.errors_streak} times in a row ({error})", figures)
        return Decision("continue", error, figures)
