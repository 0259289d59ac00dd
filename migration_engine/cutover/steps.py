"""Phase 5's flag flips as steps (``SetFlag``): the read rollout, the write cutover, the end of keep_old_sync.

Why steps: each flip then has a dry-run plan (the exact UPDATE and its ledger entry), idempotence
(a re-run finds the value and writes nothing: one ``set_flag`` ledger entry per real change), its
run state in ``step_state`` with the value found before, and a revert. Step ids are stable, so a
re-run of the cutover (seed scenario 2: "re-attempt cutover with 10 %") resumes the same records.

:class:`RolloutFlag` differs from a plain ``SetFlag`` in its revert: a rolled-back read rollout sends
*every* read back to the old tables (``read_new_pct = 0``), never to the previous step's percentage.
"""

from __future__ import annotations

import json
from typing import Any

from migration_engine.config import MigrationConfig
from migration_engine.ddl import DdlExecutor
from migration_engine.flag_step import SetFlag
from migration_engine.gates.window import fmt_duration

PHASE = "phase5"


class RolloutFlag(SetFlag):
    """``read_new_pct`` for one rollout step; its revert is the automatic rollback (back to 0)."""

    def __init__(self, schema: str, pct: int, *, label: str):
        super().__init__(schema, "read_new_pct", int(pct), phase=PHASE, reason=f"read rollout {label}",
                         step_id=f"{PHASE}.read_rollout.{int(pct)}pct")

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        return self._set(ex, 0, f"revert {self.step_id}: every read back on the old tables")

    def revert_problems(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        now = self._current(ex)
        return [] if now == 0 else [f"read_new_pct is {json.dumps(now)}, not 0"]


def rollout_flag(cfg: MigrationConfig, pct: int) -> RolloutFlag:
    """The flip that starts one read-rollout step (used by the rollout-step operator)."""
    from migration_engine.cutover.rollout import step_for

    return RolloutFlag(cfg.control_schema, pct, label=step_for(cfg, pct).label)


def write_cutover_steps(cfg: MigrationConfig) -> list[SetFlag]:
    """``keep_old_sync`` on (if configured) *before* ``write_to_new``: the very first new-first write
    is already mirrored to the old table (seed 5.3)."""
    steps: list[SetFlag] = []
    keep = cfg.cutover.keep_old_sync
    if keep is not None:
        steps.append(SetFlag(cfg.control_schema, "keep_old_sync", True, phase=PHASE,
                             reason=f"write cutover: keep the old tables in sync for {fmt_duration(keep)} (seed 5.3)"))
    steps.append(SetFlag(cfg.control_schema, "write_to_new", True, phase=PHASE,
                         reason="write cutover: the new tables are the write path (seed 5.3)"))
    return steps


def keep_old_sync_end_step(cfg: MigrationConfig) -> SetFlag:
    """``keep_old_sync`` off once its period after the write cutover is over."""
    return SetFlag(cfg.control_schema, "keep_old_sync", False, phase=PHASE,
                   reason="the keep_old_sync period after the write cutover is over",
                   step_id=f"{PHASE}.keep_old_sync_end")


def plan_steps(cfg: MigrationConfig) -> list[SetFlag]:
    """Every flip of the DAG in order, for its dry run (each planned against the flags as they are now)."""
    from migration_engine.cutover.rollout import rollout_plan

    steps: list[SetFlag] = [RolloutFlag(cfg.control_schema, s.pct, label=s.label) for s in rollout_plan(cfg)]
    steps += write_cutover_steps(cfg)
    if cfg.cutover.keep_old_sync is not None:
        steps.append(keep_old_sync_end_step(cfg))
    return steps
