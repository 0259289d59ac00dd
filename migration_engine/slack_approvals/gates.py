"""The human approval gates of the migration and who may answer each from Slack.

A gate name ties three things together: the HITL task in a phase DAG (``approval_task(gate=...)``),
the approvers in the config (``approvals.approvers.<gate>``, else ``default``) and the button value in
the Slack message. A name outside this registry (and outside the config) is refused everywhere, so a
typo cannot create a gate nobody is allowed to answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from migration_engine.errors import MigrationError

if TYPE_CHECKING:
    from migration_engine.config import MigrationConfig

APPROVAL_GATES: dict[str, str] = {
    "phase1_rollback": "Roll back the phase-1 schema changes (drop the added columns, indexes, checks)",
    "pre_cutover": "Start the read cutover (phase 5): the pre-cutover checklist passed",
    "write_cutover": "Switch writes to the new tables (phase 5 write cutover)",
    "archive_old_tables": "Archive (rename) the old tables (phase 6)",
    "drop_old_tables": "Drop the archived tables and old columns (phase 6, irreversible)",
    "rollback_scenario_3": "Roll back after write cutover: maintenance mode, restore, sync forward",
}


class UnknownGateError(MigrationError, ValueError):
    """The gate name is neither a registered approval gate nor configured in approvals.approvers."""


def known_gates(cfg: MigrationConfig | None = None) -> list[str]:
    extra = set(cfg.approvals.approvers) - {"default"} if cfg is not None else set()
    return sorted(set(APPROVAL_GATES) | extra)


def check_gate(gate: str, cfg: MigrationConfig | None = None) -> str:
    if not isinstance(gate, str) or gate not in known_gates(cfg):
        raise UnknownGateError(f"unknown approval gate {gate!r}; known gates: {', '.join(known_gates(cfg))}")
    return gate


def check_config_gates(cfg: MigrationConfig) -> None:
    """Every ``approvals.approvers`` key must be a gate (or ``default``): catch typos at parse time."""
    unknown = sorted(set(cfg.approvals.approvers) - set(APPROVAL_GATES) - {"default"})
    if unknown:
        from migration_engine.config import ConfigError

        raise ConfigError(
            f"approvals.approvers: unknown gate(s) {unknown}; known gates: {', '.join(sorted(APPROVAL_GATES))}"
            " (or 'default')"
        )


def approvers_for(cfg: MigrationConfig, gate: str) -> list[str]:
    """Slack user ids allowed to answer ``gate`` (the gate's own list, else ``default``)."""
    return list(cfg.approvers_for(gate))


def is_approver(cfg: MigrationConfig, gate: str, slack_user_id: str) -> bool:
    return bool(slack_user_id) and slack_user_id in approvers_for(cfg, gate)
