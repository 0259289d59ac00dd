"""Database connections by connection id, honouring every libpq setting the connection carries.

Why one resolver: the Airflow connection is where an operator puts ``sslmode=verify-full``,
``sslrootcert``, ``options``, keepalives. Every psycopg2 connection, every ``pg_dump``/``pg_restore``
(through ``PG*`` environment variables) and the Great Expectations (SQLAlchemy) URL is built from the
same :class:`ConnectionInfo`, so no path silently falls back to libpq's ``sslmode=prefer``.

Where the connection comes from: inside Airflow the layer installs Airflow's own lookup
(``migration_engine.airflow.connections``: metadata DB, secrets backends, ``AIRFLOW_CONN_*``);
without Airflow (the backfill CLI, tests of the engine) the ``AIRFLOW_CONN_<ID>`` environment
variable is read here, in either of Airflow's formats (URI with query-string extras, or JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import psycopg2

from migration_engine.errors import ConnectionConfigError

# libpq keywords a connection's extras may carry (passed to psycopg2 as they are)
LIBPQ_KEYS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword", "sslcompression",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "sslsni", "requirepeer", "gssencmode",
    "options", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
    "tcp_user_timeout", "target_session_attrs", "channel_binding", "connect_timeout",
)
# libpq keyword -> environment variable, for the pg_dump/pg_restore subprocesses
_PG_ENV = {
    "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL", "sslcompression": "PGSSLCOMPRESSION", "sslsni": "PGSSLSNI",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION", "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "requirepeer": "PGREQUIREPEER", "gssencmode": "PGGSSENCMODE", "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT", "tcp_user_timeout": "PGTCPUSERTIMEOUT",
}


class MissingConnectionError(ConnectionConfigError):
    """The connection named in the migration config is not defined or not reachable."""


def conn_env_var(conn_id: str) -> str:
    return "AIRFLOW_CONN_" + conn_id.upper()


@dataclass(frozen=True)
class ConnectionInfo:
    """A database connection as Airflow defines one (attribute names as on Airflow's ``Connection``)."""

    conn_id: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None  # Airflow's name for the database
    extra_dejson: dict[str, Any] = field(default_factory=dict)

    def libpq_options(self) -> dict[str, str]:
        """The extras that are libpq settings (unknown extras are ignored, as the Postgres hook does)."""
        return {k: str(v) for k, v in self.extra_dejson.items() if k in LIBPQ_KEYS and v is not None}

    def connect_kwargs(self, dbname: str | None = None) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port or 5432, "user": self.login,
                                  "password": self.password, "dbname": dbname or self.schema or None}
        kwargs.update(self.libpq_options())
        return {k: v for k, v in kwargs.items() if v is not None}

    def pg_env(self, dbname: str | None = None) -> dict[str, str]:
        """``PG*`` variables for libpq command-line tools (the password never goes on a command line)."""
        env = {"PGHOST": self.host or "", "PGPORT": str(self.port or 5432), "PGUSER": self.login or "",
               "PGDATABASE": dbname or self.schema or ""}
        if self.password:
            env["PGPASSWORD"] = self.password
        env.update({_PG_ENV[k]: v for k, v in self.libpq_options().items() if k in _PG_ENV})
        return {k: v for k, v in env.items() if v != ""}

    def sqlalchemy_url(self, dbname: str | None = None) -> str:
        """``postgresql+psycopg2://…?sslmode=…`` with every libpq setting as a query parameter."""
        auth = quote(self.login or "", safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        query = urlencode(self.libpq_options())
        return (f"postgresql+psycopg2://{auth}@{self.host or ''}:{self.port or 5432}/"
                f"{quote(dbname or self.schema or '', safe='')}" + (f"?{query}" if query else ""))

    def describe(self) -> str:
        tls = self.extra_dejson.get("sslmode")
        return f"{self.host}:{self.port or 5432}/{self.schema}" + (f" sslmode={tls}" if tls else "")


def parse_airflow_env(conn_id: str, value: str) -> ConnectionInfo:
    """An ``AIRFLOW_CONN_*`` value in either of Airflow's formats: JSON, or a URI whose query is extras."""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MissingConnectionError(f"{conn_env_var(conn_id)} is not valid JSON: {exc}") from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        return ConnectionInfo(conn_id, data.get("host"), int(data["port"]) if data.get("port") else None,
                              data.get("login"), data.get("password"), data.get("schema"), dict(extra))
    parts = urlsplit(text)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any] = json.loads(query.pop("__extra__")) if "__extra__" in query else {}
    extra.update(query)
    return ConnectionInfo(conn_id, unquote(parts.hostname) if parts.hostname else None, parts.port,
                          unquote(parts.username) if parts.username else None,
                          unquote(parts.password) if parts.password else None,
                          unquote(parts.path.lstrip("/")) or None, extra)


def _from_environment(conn_id: str) -> ConnectionInfo:
    value = os.environ.get(conn_env_var(conn_id))
    if not value:
        raise MissingConnectionError(not_defined_message(conn_id))
    return parse_airflow_env(conn_id, value)


def not_defined_message(conn_id: str) -> str:
    return (f"Airflow connection {conn_id!r} is not defined. Add it under Admin -> Connections or set the "
            f"environment variable {conn_env_var(conn_id)}=postgresql://user:pass@host:port/db"
            "?sslmode=verify-full&sslrootcert=/path/ca.pem")


_resolver: Callable[[str], ConnectionInfo] = _from_environment


def set_resolver(resolver: Callable[[str], ConnectionInfo]) -> None:
    """Where ``get_connection`` looks (the Airflow layer installs Airflow's own lookup)."""
    global _resolver
    _resolver = resolver


def get_connection(conn_id: str) -> ConnectionInfo:
    """The connection, or an error naming it and saying how to define it."""
    try:
        return _resolver(conn_id)
    except MissingConnectionError:
        raise
    except Exception as exc:  # noqa: BLE001 - Airflow's not-found exceptions differ between its layers
        raise MissingConnectionError(f"{not_defined_message(conn_id)} ({type(exc).__name__}: {exc})") from exc


def connect(conn_id: str, *, application_name: str = "zero-downtime-migration", connect_timeout: int = 10,
            dbname: str | None = None):
    """A psycopg2 connection for a connection id, with all its TLS/libpq settings."""
    info = get_connection(conn_id)
    kwargs = {"connect_timeout": connect_timeout, **info.connect_kwargs(dbname), "application_name": application_name}
    try:
        return psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        raise MissingConnectionError(
            f"Airflow connection {conn_id!r} ({info.describe()}) is not reachable: {str(exc).strip()}"
        ) from exc


@contextmanager
def connection(conn_id: str, **kwargs):
    conn = connect(conn_id, **kwargs)
    try:
        yield conn
    finally:
        conn.close()
