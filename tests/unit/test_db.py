"""Connections as Airflow defines them: every libpq setting of the connection reaches every client."""

from __future__ import annotations

import json

import pytest

from migration_engine import db


def test_uri_extras_become_libpq_settings_env_and_url():
    info = db.parse_airflow_env("legacy", "postgresql://app%40x:p%2Fss@db.example:6543/shop"
                                "?sslmode=verify-full&sslrootcert=/etc/ca.pem&options=-c%20statement_timeout%3D5s"
                                "&keepalives_idle=30&unrelated=1")
    assert (info.host, info.port, info.login, info.schema) == ("db.example", 6543, "app@x", "shop")
    assert info.password == "p/ss"
    kw = info.connect_kwargs()
    assert kw["sslmode"] == "verify-full" and kw["sslrootcert"] == "/etc/ca.pem" and kw["keepalives_idle"] == "30"
    assert kw["options"] == "-c statement_timeout=5s" and "unrelated" not in kw
    env = info.pg_env()
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "/etc/ca.pem" and env["PGPASSWORD"] == "p/ss"
    assert env["PGOPTIONS"] == "-c statement_timeout=5s"
    url = info.sqlalchemy_url()
    assert url.startswith("postgresql+psycopg2://app%40x:p%2Fss@db.example:6543/shop?")
    assert "sslmode=verify-full" in url and "sslrootcert=%2Fetc%2Fca.pem" in url
    assert "p/ss" not in repr(info)  # the password is not in logs of the object


def test_json_form_with_extra_object_or_string():
    for extra in ({"sslmode": "require"}, json.dumps({"sslmode": "require"})):
        info = db.parse_airflow_env("new", json.dumps({"conn_type": "postgres", "host": "h", "port": 5433,
                                                       "login": "u", "schema": "d", "extra": extra}))
        assert info.connect_kwargs() == {"host": "h", "port": 5433, "user": "u", "dbname": "d", "sslmode": "require"}


def test_missing_connection_names_it_and_how_to_define_it(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOPE_DB", raising=False)
    monkeypatch.setattr(db, "_resolver", db._from_environment)
    with pytest.raises(db.MissingConnectionError, match=r"'nope_db' is not defined.*AIRFLOW_CONN_NOPE_DB="):
        db.get_connection("nope_db")
    monkeypatch.setenv("AIRFLOW_CONN_NOPE_DB", "{not json")
    with pytest.raises(db.MissingConnectionError, match="AIRFLOW_CONN_NOPE_DB is not valid JSON"):
        db.get_connection("nope_db")


def test_settings_are_honoured_by_a_real_server(databases, monkeypatch):
    """`options` from the connection reaches the session (proof that extras are not dropped)."""
    monkeypatch.setattr(db, "_resolver", db._from_environment)
    monkeypatch.setenv("AIRFLOW_CONN_OPTS_DB", databases.legacy_dsn + "?options=-c%20application_name%3Dx"
                       "%20-c%20statement_timeout%3D4321")
    with db.connection("opts_db") as conn, conn.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone()[0] == "4321ms"
    monkeypatch.setenv("AIRFLOW_CONN_OPTS_DB", databases.legacy_dsn + "?sslmode=require")  # the test server has no TLS
    with pytest.raises(db.MissingConnectionError, match=r"'opts_db' .*sslmode=require.* is not reachable"):
        db.connect("opts_db")
