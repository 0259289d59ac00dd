"""Phase 2 (seed "Dual-Write Period") as steps: the dual-write flag, then one backfill pass per entity.

* :func:`dual_write_steps` - ``dual_write_enabled := true`` as a ``SetFlag`` step (audited in the
  same transaction; a re-run that finds it on writes nothing; revert puts back the value found),
  built only after the entities' preflight (``preflight.py``) found nothing wrong.
* :func:`backfill_steps` - one ``BackfillPass`` per requested entity (``backfill.step``): apply
  creates or resumes the pass whose ranges the mapped tasks copy; verify is the per-row checksum diff.
"""

from __future__ import annotations

from typing import Any

from migration_engine import db, preflight
from migration_engine.backfill.step import BackfillPass
from migration_engine.backfill.tasks import requested_entities, settings_from_params
from migration_engine.config import MigrationConfig
from migration_engine.flag_step import SetFlag

PHASE = "phase2"
PLAN_APP = "migration-backfill-plan"


def dual_write_steps(cfg: MigrationConfig) -> list[SetFlag]:
    """The flag, after the preflight of every entity: the application starts writing the new tables
    the moment it is on, so a mapping that cannot work must stop the run before (plan and apply)."""
    preflight.run_preflight(cfg, parts=(preflight.ENTITIES,))
    return [SetFlag(cfg.control_schema, "dual_write_enabled", True, phase=PHASE,
                    reason="phase 2: the dual-write period starts")]


def backfill_steps(cfg: MigrationConfig, params: dict[str, Any], *, dag_id: str | None = None,
                   run_id: str | None = None) -> list[BackfillPass]:
    """One step per requested entity (Param ``entities``), with the run's settings and ``restart_backfill``."""
    s = settings_from_params(cfg, params)
    entities = requested_entities(cfg, params.get("entities"))
    preflight.run_preflight(cfg, parts=(preflight.ENTITIES,), entities=entities)
    return [BackfillPass(cfg, entity, s, restart=bool(params.get("restart_backfill")), dag_id=dag_id,
                         dag_run_id=run_id,
                         connect_legacy=lambda: db.connect(cfg.connections.legacy, application_name=PLAN_APP),
                         connect_new=lambda: db.connect(cfg.new_conn_id, application_name=PLAN_APP))
            for entity in entities]
