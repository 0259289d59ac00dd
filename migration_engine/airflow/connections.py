"""Airflow's own connection lookup (metadata DB, secrets backends, ``AIRFLOW_CONN_*``) for the engine."""

from __future__ import annotations

from migration_engine import db


def from_airflow(conn_id: str) -> db.ConnectionInfo:
    """The Airflow connection as the engine's :class:`~migration_engine.db.ConnectionInfo` (extras kept)."""
    from airflow.sdk import BaseHook

    try:
        c = BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException and the task-SDK equivalent
        raise db.MissingConnectionError(db.not_defined_message(conn_id)) from exc
    extra = c.extra_dejson if isinstance(c.extra_dejson, dict) else {}
    return db.ConnectionInfo(conn_id, c.host, c.port, c.login, c.password, c.schema, dict(extra))


def install() -> None:
    db.set_resolver(from_airflow)
