"""Rollback scenarios 1 and 2: one flag back to the old path, then watch for recovery.

Scenario 1 (seed "During Dual-Write Phase"): ``dual_write_enabled = false``. The old system is
still authoritative, so no data is at risk; the new tables simply stop receiving copies (the
backfill/dual-write resumes them after the fix).

Scenario 2 (seed "After Read Cutover"): ``read_new_pct = 0``. Writes still go to the old tables
(dual-write keeps the new ones in sync), so serving every read from the old tables loses nothing.

Both refuse once writes have moved to the new tables (``write_to_new``): the old tables are then
stale, and only scenario 3 (``migration_rollback_writes``) brings them up to date.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from migration_engine import control
from migration_engine.config import MigrationConfig
from migration_engine.control import current_flags
from migration_engine.errors import Refused
from migration_engine.flag_step import SetFlag
from migration_engine.steps import StepRunner

SCENARIOS = {
    "dual_write": {"flag": "dual_write_enabled", "value": False, "mode": "dual_write",
                   "title": "Rollback scenario 1: dual-write off",
                   "alert": "The old tables stay authoritative; verifying the old path now.",
                   "shown_after": "false"},
    "reads": {"flag": "read_new_pct", "value": 0, "mode": "reads",
              "title": "Rollback scenario 2: all reads back on the old tables",
              "alert": "Verifying that the error rate returns to baseline.",
              "shown_after": "0"},
}


class RollbackRefused(Refused):
    """This rollback does not apply to the current state; the message names the right one."""


def flag_step(cfg: MigrationConfig, scenario: str, reason: str) -> SetFlag:
    """The scenario's one flag change as a step (its revert puts back the value it found)."""
    spec = SCENARIOS[scenario]
    return SetFlag(cfg.control_schema, spec["flag"], spec["value"], phase=f"rollback.{scenario}",
                   reason=f"{spec['title']}: {reason}", step_id=f"rollback.{scenario}.flag.{spec['flag']}")


def apply(conn, cfg: MigrationConfig, scenario: str, *, actor: str, context: dict, reason: str) -> dict[str, Any]:
    """Set the scenario's flag (a ``SetFlag`` step: audited, idempotent) and return what the recovery
    watch needs."""
    spec = SCENARIOS[scenario]
    if not reason.strip():
        raise RollbackRefused("give a reason (the symptoms) for the audit ledger")
    flags = current_flags(conn, cfg.control_schema)
    if flags.get("write_to_new"):
        raise RollbackRefused(
            "writes are already on the new tables (write_to_new = true): the old tables are stale, so "
            f"{spec['title'].split(':')[0].lower()} cannot help - run migration_rollback_writes (scenario 3)")
    before = flags.get(spec["flag"])
    step = flag_step(cfg, scenario, reason)
    runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor, context=context)
    (result,) = runner.apply([step])
    runner.verify([step])
    changed = result.changed
    at = datetime.now(UTC)
    control.audit(conn, cfg.control_schema, actor=actor, action=f"rollback.{scenario}.applied",
                  target=spec["flag"], details={**context, "before": before, "after": spec["value"],
                                                "changed": changed, "at": at.isoformat()},
                  reason=reason)
    return {"scenario": scenario, "flag": spec["flag"], "before": before, "after": spec["value"],
            "changed": changed, "changed_at": at.isoformat()}


def alert_text(scenario: str, result: dict[str, Any], reason: str) -> tuple[str, str, dict[str, str]]:
    """(title, text, figures) of the warning that tells the channel what changed."""
    spec = SCENARIOS[scenario]
    return (spec["title"], f"Reason: {reason}. {spec['alert']}",
            {spec["flag"]: f"{result['before']} -> {spec['shown_after']}"})


def record_outcome(conn, cfg: MigrationConfig, scenario: str, *, actor: str, context: dict, verified: bool,
                   reason: str, figures: dict) -> None:
    control.audit(conn, cfg.control_schema, actor=actor,
                  action=f"rollback.{scenario}.{'verified' if verified else 'verify_failed'}",
                  target=SCENARIOS[scenario]["flag"], details={**context, "figures": figures}, reason=reason)
