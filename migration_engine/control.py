"""Control schema: feature flags, audit ledger, gate results (engine side).

Creation and upgrades are versioned migrations (:mod:`migration_engine.control_schema`).

Why tables and not Airflow Variables: the application reads the flags and writes the stats, so
the contract must live where the application already has a connection - its own database. Every
flag change is written to the append-only ledger in the same transaction, so the ledger can never
disagree with the flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migration_engine import sqlfiles, telemetry
from migration_engine.errors import MigrationError

FLAG_TYPES: dict[str, type] = {
    "dual_write_enabled": bool,
    "read_new_pct": int,
    "shadow_read_pct": int,
    "write_to_new": bool,
    "keep_old_sync": bool,
    "maintenance_mode": bool,
}


class ControlError(MigrationError):
    """A control-schema operation was refused (unknown flag, bad value, missing schema)."""


def ensure_control_schema(conn, schema: str, ddl=None, **options: Any) -> list:
    """Create or upgrade the control schema: a thin name for :func:`migration_engine.control_schema.upgrade`.

    Safe to run any number of times, concurrently too; returns the migrations it applied.
    """
    from migration_engine import control_schema  # lazy: applications import this module without the engine

    return control_schema.upgrade(conn, schema, ddl, **options)


def control_schema_exists(conn, schema: str) -> bool:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "control/schema_exists.sql", params={"schema": schema})
        return bool(cur.fetchone()[0])


def _require_schema(conn, schema: str) -> None:
    if not control_schema_exists(conn, schema):
        raise ControlError(
            f'control schema "{schema}" does not exist in this database; run the '
            "migration_setup DAG (or migration_engine.control.ensure_control_schema) first"
        )


def validate_flag(name: str, value: Any) -> Any:
    if name not in FLAG_TYPES:
        raise ControlError(f"unknown feature flag {name!r}; known flags: {sorted(FLAG_TYPES)}")
    kind = FLAG_TYPES[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise ControlError(f"flag {name} takes true/false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ControlError(f"flag {name} takes a whole number 0-100, got {value!r}")
    if not 0 <= value <= 100:
        raise ControlError(f"flag {name} must be between 0 and 100, got {value!r}")
    return int(value)


def get_flags(conn, schema: str) -> dict[str, Any]:
    _require_schema(conn, schema)
    with conn.cursor() as cur:
        sqlfiles.run(cur, "control/flags_get.sql", {"schema": schema})
        return {name: value for name, value, _at, _by in cur.fetchall()}


def append_audit(
    conn, schema: str, *, actor: str, action: str, target: str = "", details: dict | None = None,
    reason: str = "",
) -> tuple[int, datetime]:
    """Append one ledger entry in the caller's transaction (caller commits)."""
    with conn.cursor() as cur:
        sqlfiles.run(
            cur, "control/audit_append.sql", {"schema": schema},
            {"actor": actor, "action": action, "target": target,
             "details": json.dumps(details or {}, default=str), "reason": reason},
        )
        return cur.fetchone()


def audit(conn, schema: str, **entry: Any) -> tuple[int, datetime]:
    """Append one ledger entry and commit it."""
    try:
        result = append_audit(conn, schema, **entry)
        conn.commit()
        return result
    except Exception:
        conn.rollback()
        raise


@dataclass(frozen=True)
class FlagChange:
    name: str
    old_value: Any
    new_value: Any
    audit_id: int


def set_flag(conn, schema: str, name: str, value: Any, *, actor: str, reason: str,
             context: dict | None = None) -> FlagChange:
    """Set a flag and write the ledger entry in one transaction (both or neither)."""
    value = validate_flag(name, value)
    _require_schema(conn, schema)
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "control/flag_set.sql", {"schema": schema},
                         {"name": name, "value": json.dumps(value), "actor": actor})
            row = cur.fetchone()
            if row is None:
                raise ControlError(f"flag {name!r} is missing from {schema}.feature_flags; re-run migration_setup")
            old_value, new_value = row
        audit_id, _ = append_audit(
            conn, schema, actor=actor, action="set_flag", target=name,
            details={"old": old_value, "new": new_value, **(context or {})}, reason=reason,
        )
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    return FlagChange(name, old_value, new_value, audit_id)


def ensure_flag(conn, schema: str, name: str, value: Any, *, actor: str, reason: str,
                context: dict | None = None) -> FlagChange | None:
    """Set ``name`` to ``value`` (audited) unless it already has that value; returns the change."""
    value = validate_flag(name, value)
    current = get_flags(conn, schema).get(name)
    if not conn.autocommit:
        conn.rollback()
    if current == value and isinstance(current, type(value)):
        return None
    return set_flag(conn, schema, name, value, actor=actor, reason=reason, context=context)


def current_flags(conn, schema: str) -> dict[str, Any]:
    flags = get_flags(conn, schema)
    if not conn.autocommit:
        conn.rollback()
    return flags


def record_gate_result(
    conn, schema: str, *, gate: str, status: str, figures: dict, reason: str,
    dag_id: str | None = None, run_id: str | None = None,
) -> int:
    try:
        with conn.cursor() as cur:
            sqlfiles.run(
                cur, "control/gate_result_insert.sql", {"schema": schema},
                {"gate": gate, "status": status, "figures": json.dumps(figures, default=str),
                 "reason": reason, "dag_id": dag_id, "run_id": run_id},
            )
            gate_id = cur.fetchone()[0]
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    telemetry.gate_evaluated(gate, status, figures)  # the gate's metrics now, not at the next sampler run
    return gate_id


def grant_application_role(conn, schema: str, role: str) -> None:
    """Give the application's role exactly its side of the contract: read flags, write stats.

    Run by the migration role (the control schema's owner) after ``migration_setup``; the role must
    exist. Idempotent (GRANT twice is a no-op). See docs/deployment.md, "Least privilege".
    """
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "deployment/application_role.sql", {"schema": schema, "app_role": role})
        conn.commit()
    except Exception:
        conn.rollback()
        raise
