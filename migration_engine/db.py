"""Database connections by Airflow connection id, with errors that say how to fix them."""

from __future__ import annotations

from contextlib import contextmanager

import psycopg2

from migration_engine.errors import MigrationError


class MissingConnectionError(MigrationError):
    """The Airflow connection named in the migration config is not defined or not reachable."""


def conn_env_var(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


def airflow_connection(conn_id: str):
    """The Airflow Connection object, or an error saying how to define it (Airflow imported lazily)."""
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and the task-SDK equivalent
        raise MissingConnectionError(
            f"Airflow connection {conn_id!r} is not defined. Add it under Admin -> Connections "
            f"or set the environment variable {conn_env_var(conn_id)}=postgresql://user:pass@host:port/db"
        ) from exc


def connect(conn_id: str, *, application_name: str = "zero-downtime-migration", connect_timeout: int = 10):
    """A psycopg2 connection for an Airflow connection id."""
    conn = airflow_connection(conn_id)
    try:
        return psycopg2.connect(
            host=conn.host, port=conn.port or 5432, user=conn.login, password=conn.password,
            dbname=conn.schema or None, application_name=application_name, connect_timeout=connect_timeout,
        )
    except psycopg2.OperationalError as exc:
        raise MissingConnectionError(
            f"Airflow connection {conn_id!r} ({conn.host}:{conn.port}/{conn.schema}) is not reachable: "
            f"{str(exc).strip()}"
        ) from exc


@contextmanager
def connection(conn_id: str, **kwargs):
    conn = connect(conn_id, **kwargs)
    try:
        yield conn
    finally:
        conn.close()
