"""Bootstrap: check the connections, the config against both databases (the preflight), create the
control schema."""

from __future__ import annotations

import logging

from migration_engine import control, control_schema, db, sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.errors import VerificationError
from migration_engine.preflight import run_preflight

log = logging.getLogger(__name__)


def check_connections(cfg: MigrationConfig) -> dict[str, str]:
    """Connect to every database the config names; raise naming the first one that fails."""
    versions = {}
    for side in ("legacy", "new"):
        conn_id = cfg.conn_id(side)
        with db.connection(conn_id) as conn, conn.cursor() as cur:
            sqlfiles.run(cur, "common/server_version.sql")
            versions[side] = cur.fetchone()[0]
            log.info("%s database (%s): PostgreSQL %s", side, conn_id, versions[side])
    return versions


def preflight(cfg: MigrationConfig) -> dict:
    """Every table, column, key and type the config names, on its database (``preflight``): reads
    only, and raises one PreflightError listing every problem with its config path."""
    return run_preflight(cfg)


def create_control_schema(cfg: MigrationConfig, *, dry_run: bool = False) -> dict:
    """Create the control schema, or upgrade it to the code's version (the one place that does).

    The step shape with its own state store: *plan* is the exact SQL of the pending migrations
    (``dry_run``: nothing is sent), *apply* is ``control_schema.upgrade`` (idempotent; its run state
    is ``schema_version``, since ``step_state`` lives inside the schema being created), *verify*
    checks every object the migrations create. No revert: dropping the control schema would lose the
    audit ledger. Every statement runs under the config's ddl.* timeouts with lock-timeout retries; a
    schema made before versioned migrations is adopted in place.
    """
    with db.connection(cfg.connections.legacy) as conn:
        if dry_run:
            statements = control_schema.plan(conn, cfg.control_schema, cfg.ddl)
            log.info("DRY RUN: the control schema upgrade would send:\n%s",
                     ";\n".join(statements) if statements else "(nothing: it is current)")
            return {"dry_run": True, "plan": statements}
        applied = control_schema.upgrade(conn, cfg.control_schema, cfg.ddl, applied_by="migration_setup")
        problems = control_schema.verify(conn, cfg.control_schema)
        if problems:
            raise VerificationError(problems, step_id="setup.control_schema")
        version = control_schema.current_version(conn, cfg.control_schema)
        flags = control.get_flags(conn, cfg.control_schema)
    log.info("control schema %s at version %d (applied now: %s); flags: %s", cfg.control_schema, version,
             ", ".join(m.name for m in applied) or "nothing, it was current", flags)
    return {"dry_run": False, "version": version, "applied": [m.name for m in applied], "flags": flags}
