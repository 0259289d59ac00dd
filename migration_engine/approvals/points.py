"""The approval points of the migration (where a human must say yes) and who may answer each.

Terminology: a *gate* is a machine check (sensors, ``gate_results``); an *approval point* is a
human decision. An approval point's name ties three things together: the HITL task in a phase DAG
(``approval(..., approval_point=...)``), the approvers in the config (``approvals.approvers.<point>``,
else ``default``; the config key keeps its name) and the button value in the Slack message. A name
outside this registry (and outside the config) is refused everywhere, so a typo cannot create an
approval point nobody is allowed to answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from migration_engine.errors import ConfigError, MigrationError

if TYPE_CHECKING:
    from migration_engine.config import MigrationConfig

APPROVAL_POINTS: dict[str, str] = {
    "phase1_rollback": "Roll back the phase-1 schema changes (drop the added columns, indexes, checks)",
    "pre_cutover": "Start the read cutover (phase 5): the pre-cutover checklist passed",
    "write_cutover": "Switch writes to the new tables (phase 5 write cutover)",
    "archive_old_tables": "Archive (rename) the old tables (phase 6)",
    "drop_old_tables": "Drop the archived tables and old columns (phase 6, irreversible)",
    "rollback_scenario_3": "Roll back after write cutover: maintenance mode, restore, sync forward",
    "repair_deletes": "Let the phase-3 repair delete more new rows than consistency.repair_max_deletes",
}


class UnknownApprovalPoint(MigrationError, ValueError):
    """The name is neither a registered approval point nor configured in approvals.approvers."""


def known_approval_points(cfg: MigrationConfig | None = None) -> list[str]:
    extra = set(cfg.approvals.approvers) - {"default"} if cfg is not None else set()
    return sorted(set(APPROVAL_POINTS) | extra)


def check_approval_point(point: str, cfg: MigrationConfig | None = None) -> str:
    if not isinstance(point, str) or point not in known_approval_points(cfg):
        raise UnknownApprovalPoint(f"unknown approval point {point!r}; known approval points: "
                                   f"{', '.join(known_approval_points(cfg))}")
    return point


def check_config_approval_points(cfg: MigrationConfig) -> None:
    """Every ``approvals.approvers`` key must be an approval point (or ``default``): catch typos early."""
    unknown = sorted(set(cfg.approvals.approvers) - set(APPROVAL_POINTS) - {"default"})
    if unknown:
        raise ConfigError(
            f"approvals.approvers: unknown approval point(s) {unknown}; known approval points: "
            f"{', '.join(sorted(APPROVAL_POINTS))} (or 'default')"
        )


def people_for(cfg: MigrationConfig, point: str) -> list:
    """The people (``config.Approver``: Slack id + Airflow user) who may answer ``point``."""
    return cfg.approvers_for(point)


def approvers_for(cfg: MigrationConfig, point: str) -> list[str]:
    """Slack user ids allowed to answer ``point`` (the point's own list, else ``default``)."""
    return [p.slack for p in people_for(cfg, point)]


def person_for_slack(cfg: MigrationConfig, point: str, slack_user_id: str):
    """The configured approver of ``point`` with this Slack id, else None."""
    return next((p for p in people_for(cfg, point) if slack_user_id and p.slack == slack_user_id), None)


def is_approver(cfg: MigrationConfig, point: str, slack_user_id: str) -> bool:
    return person_for_slack(cfg, point, slack_user_id) is not None


def assigned_users(cfg: MigrationConfig, point: str) -> list[dict[str, str]] | None:
    """HITL ``assigned_users`` for ``point`` (``{"id", "name"}`` per person): Airflow's UI and REST API
    then refuse (403) anyone else. None when nobody is configured: Airflow's own permissions decide
    (and nobody can answer from Slack) - see docs/oncall-slack.md section 3."""
    people = people_for(cfg, point)
    return [{"id": p.airflow, "name": p.label} for p in people] or None
